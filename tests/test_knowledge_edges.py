"""Edges of fp8doctor/knowledge/ that no other fast test held: each case here kills a mutant that survived
`python benchmarks/mutation.py` (docs/mutation.md), on the engine's typed inputs and the lab's observed releases."""

from __future__ import annotations

import shlex

import pytest

from fp8doctor.knowledge import capability, fixes, generations, intent, precision, releases, versions
from fp8doctor.knowledge.command_forms import parse
from fp8doctor.knowledge.engine import Setup, Stack, predict
from fp8doctor.knowledge.optimizer_params import ALL_GATHER_VAR

OBSERVED = releases.observed()
ACC_NEW, TF5 = OBSERVED["accelerate"][-1], OBSERVED["transformers"][-1]
ACC_OLD = OBSERVED["accelerate"][0]  # 1.1.1 in the lab: FP8RecipeKwargs only


def test_a_release_without_minor_is_minor_0() -> None:
    assert versions.release("2") == versions.release("2.0.0") == (2, 0)
    assert versions.release("1.10.0rc1") == (1, 10)
    assert versions.release(None) is None and versions.release("not-a-version") is None


def test_the_chain_names_the_launch_and_what_transformers_5_passes() -> None:
    launch = {"distributed_type": "NO", "mixed_precision": "fp8", "fp8_config": {"backend": "AO"}}
    got = predict(Stack(accelerate=ACC_NEW, transformers=TF5, torchao="0.18.0"),
                  Setup(frontend="trainer", precision="bf16", launch_yaml=launch))
    steps = {s["stage"]: s for s in got["chain"]}
    assert steps["launch"]["value"] == "ACCELERATE_MIXED_PRECISION=fp8, ACCELERATE_FP8_BACKEND=AO"
    assert steps["TrainingArguments"]["value"] == "bf16"
    assert got["reaches"] == "bf16"


def test_an_unknown_patch_is_named() -> None:
    with pytest.raises(ValueError, match="unknown patch 'monkey'"):
        predict(Stack(accelerate=ACC_NEW, transformers=TF5), Setup(frontend="trainer", precision="bf16",
                                                                 patch="monkey"))


def test_only_torchao_needs_a_recipe_class() -> None:
    assert capability.accelerate_has_recipe("te", ACC_OLD) == (True, "no Accelerate recipe class is needed")
    assert capability.accelerate_has_recipe("torchao", None) == (True, "accelerate is not installed")
    ok, why = capability.accelerate_has_recipe("torchao", ACC_OLD)
    assert not ok and "accelerate>=1.4" in why


def test_deepspeed_fp16_wins_over_bf16() -> None:
    both = {"fp16": {"enabled": True}, "bf16": {"enabled": True}}
    assert intent.training_precision(both, "deepspeed") == "fp16"
    assert intent.training_precision({"bf16": {"enabled": True}}, "deepspeed") == "bf16"


@pytest.mark.parametrize(("stage", "where"), [("init", " when the Accelerator is built"), ("prepare", " in prepare()"),
                                              ("train", "")])
def test_a_raised_outcome_says_where(stage: str, where: str) -> None:
    outcome = {"outcome": "raised", "type": "ValueError", "message": "m", "stage": stage}
    assert precision.describe_outcome(outcome, ACC_NEW) == f"ValueError{where} (accelerate {ACC_NEW}): m"


def test_a_transformers_older_than_observed_is_installed() -> None:
    got = generations.transformers_generation("4.30.0")
    assert got == {"installed": True, "version": "4.30.0", "generation": "older than any observed release"}


def test_what_if_reads_names_as_written_and_aliases() -> None:
    assert releases.parse_what_if([" Accelerate==1.8.1", "llama-factory==0.9.4"]) == {
        "accelerate": "1.8.1", "llamafactory": "0.9.4"}


def test_torchrun_is_not_the_script_and_llamafactory_keeps_the_user_s_config() -> None:
    facts = {"packages": {"accelerate": ACC_NEW}, "command": ["torchrun", "--nproc_per_node", "2", "train_x.py"]}
    made = fixes.fixes_for(facts, "AO")
    # torchrun keeps its form: no `accelerate launch` fix, the environment fix runs the user's own command
    assert [f.key for f in made] == ["env"] and made[0].command == tuple(facts["command"])
    lf = {"packages": {"accelerate": ACC_NEW}, "command": ["llamafactory-cli", "train", "my_sft.yaml"]}
    (fix,) = fixes.fixes_for(lf, "AO")
    assert fix.command == ("llamafactory-cli", "train", "my_sft.yaml") and "my_sft.yaml" in fix.edits


def test_rendered_exports_are_quoted_values() -> None:
    fix = fixes.env_fix("AO", parse(["python", "train.py"]), ACC_NEW)
    assert fix is not None
    exports = [line for line in fixes.render(fix) if line.startswith("export ")]
    assert shlex.split(exports[0])[1:] == ["ACCELERATE_MIXED_PRECISION=fp8", "ACCELERATE_FP8_BACKEND=AO",
                                           *(f"{k}={v}" for k, v in fix.env.items() if k == ALL_GATHER_VAR)]


def test_a_release_between_generations_is_not_given_either_label() -> None:
    # a generation is a run of observed releases answering alike: 1.5 raises at prepare where 1.6 and 1.7 train,
    # so 1.5 has a label of its own; an unobserved patch release takes its minor's label
    label = {v: generations.accelerate_generation(v)["generation"] for v in ("1.5.2", "1.6.0", "1.7.0", "1.6.9")}
    assert label["1.5.2"] != label["1.6.0"] == label["1.7.0"] == label["1.6.9"]
    assert generations.accelerate_generation("1.2.0")["generation"] == generations.accelerate_generation(
        "1.3.0")["generation"]


@pytest.mark.parametrize(("te_ok", "backend"), [(True, "TE"), (False, "AO")])
def test_te_is_chosen_only_when_it_imports(te_ok: bool, backend: str) -> None:
    facts = {"packages": {"transformer-engine": "2.9.0", "torchao": "0.18.0"}, "te_import": {"ok": te_ok}}
    assert generations.intended_backend(facts) == backend


def test_transformers_generation_keys_for_every_kind_of_version() -> None:
    assert generations.transformers_generation(TF5)["installed"] is True
    assert generations.transformers_generation("garbage") == {"installed": True, "version": "garbage",
                                                              "generation": "unknown"}
    assert generations.transformers_generation(None) == {"installed": False, "version": None, "generation": "absent"}


def test_deepspeed_sections_are_read_by_enabled_only() -> None:
    assert intent.training_precision({"fp16": {"enabled": False}}, "deepspeed") is None
    assert intent.training_precision({"fp16": {"enabled": False}, "bf16": {"enabled": True}}, "deepspeed") == "bf16"


def test_an_absent_release_is_absent() -> None:
    assert releases.coverage("accelerate", None).status == "absent"
    assert releases.coverage("accelerate", ACC_NEW).status == "observed"


def test_a_release_older_than_observed_is_installed_but_unreadable() -> None:
    # None would mean "not installed"; the engine must instead see an installed release it makes no claim about
    older = releases.as_observed({"accelerate": "0.30.0"})["accelerate"]
    assert older is not None and versions.parse_version(older) is None
    assert releases.as_observed({"accelerate": "9.0.0"})["accelerate"] == ACC_NEW
