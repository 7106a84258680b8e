"""Edges of fp8doctor/knowledge/ that no other fast test held: each case here kills a mutant that survived
`python benchmarks/mutation.py` (docs/mutation.md), on the engine's typed inputs and the lab's observed releases."""

from __future__ import annotations

import shlex

import pytest

from fp8doctor.knowledge import capability, fixes, generations, intent, precision, releases, versions
from fp8doctor.knowledge import predict as predict_mod
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


def test_say_names_the_stage_of_a_raise() -> None:
    for stage, words in (("launch", "at launch"), ("handler", "building the handler"), ("prepare", "in prepare()"),
                         ("init", "when the Accelerator is built")):
        assert generations.say({"outcome": "raised", "type": "E", "message": "m", "stage": stage}) == f'E {words}: "m"'


def test_transformers_5_3_always_passes_kwargs_handlers() -> None:
    # lab: from transformers 5.3 the Trainer passes DistributedDataParallelKwargs (tf5.3-acc1.15 cell)
    assert "always passes kwargs_handlers (DistributedDataParallelKwargs)" in generations.transformers_generation(
        "5.24.0")["summary"]
    assert generations.transformers_generation("4.57.1")["summary"].endswith("passes no kwargs_handlers")


def test_a_transformers_between_observed_releases_of_one_generation_takes_its_label() -> None:
    assert generations.transformers_generation("4.52.0")["generation"] == generations.transformers_generation(
        "4.50.3")["generation"] == generations.transformers_generation("4.57.1")["generation"]


def test_a_recipe_handler_under_fp8_is_asked_of_the_release_itself() -> None:
    # accelerate 1.16 with AORecipeKwargs and mixed_precision='fp8' converts (acc1.16 cell); 1.8 raises (acc1.8 cell)
    assert "with AORecipeKwargs trains in FP8" in generations.accelerate_generation("1.16.0")["summary"]
    assert "with AORecipeKwargs AttributeError" in generations.accelerate_generation("1.8.1")["summary"]


def test_first_accelerate_names_what_no_release_has() -> None:
    with pytest.raises(LookupError, match="no observed accelerate release has MSAMPKwargs"):
        generations.first_accelerate("MSAMPKwargs")


def test_accelerate_config_signs_and_backend() -> None:
    data = {"mixed_precision": "bf16", "fp8_config": {"backend": "te"}}
    got = intent.read_intent({"configs": [{"path": "acc.yaml", "kind": "accelerate", "data": data}]})
    assert got.signs == ("acc.yaml: fp8_config (under mixed_precision: bf16)",)
    assert dict(got.backends) == {"TE": "acc.yaml: fp8_config backend te"}
    assert got.launch is not None and got.launch.how == "accelerate launch --config_file acc.yaml"


def test_a_training_config_asking_fp8_is_a_sign() -> None:
    got = intent.read_intent({"configs": [{"path": "ta.yaml", "kind": "training_args",
                                           "data": {"mixed_precision": "FP8", "fp16": True}}]})
    assert got.signs == ("ta.yaml: mixed_precision: fp8",) and got.precision == "fp16" and got.launch is None


def test_the_shell_step_says_unset_or_the_value() -> None:
    steps = {"unset": precision.effective_precision({"packages": {}})["chain"],
             "set": precision.effective_precision({"environ": {"mixed_precision": "bf16"}})["chain"]}
    env = {k: next(s for s in v if s["stage"] == "env") for k, v in steps.items()}
    assert env["unset"]["value"] == "unset" and env["set"]["value"] == "'bf16' from the shell"


def test_ms_amp_opt_level_o2_is_its_default() -> None:
    # env_reads probe: ACCELERATE_FP8_OPT_LEVEL=O1 changes opt_level from its default O2
    assert predict_mod.recipe_fields_from_env(ACC_NEW, "MSAMPRecipeKwargs", {"ACCELERATE_FP8_OPT_LEVEL": "O2"}) == {}
    assert predict_mod.recipe_fields_from_env(ACC_NEW, "MSAMPRecipeKwargs", {"ACCELERATE_FP8_OPT_LEVEL": "O1"}) == {
        "opt_level": {"default": "O2", "with_env": "O1"}}


def test_a_false_ao_variable_changes_the_torchao_config() -> None:
    got = predict_mod.recipe_fields_from_env("1.13.0", "AORecipeKwargs", {"ACCELERATE_FP8_PAD_INNER_DIM": "false"})
    assert got == {"pad_inner_dim": {"default": True, "with_env": False}, "config": "changed"}
    assert predict_mod.recipe_fields_from_env("1.11.0", "AORecipeKwargs", {"ACCELERATE_FP8_PAD_INNER_DIM": "no"}) == {}


def test_a_bad_what_if_says_what_is_expected() -> None:
    with pytest.raises(ValueError, match="expected PKG==VERSION with PKG one of accelerate, transformers, torchao"):
        releases.parse_what_if(["numpy==1.0"])


def test_say_tells_an_absent_class_from_an_unobserved_outcome() -> None:
    assert generations.say({"outcome": "absent"}) == "the class does not exist"
    assert generations.say({"outcome": "unknown"}) == "not observed"


def test_the_default_accelerate_config_is_named_by_its_path() -> None:
    acc = {"exists": True, "path": "/h/default_config.yaml", "chosen_by": "default location",
           "data": {"mixed_precision": "fp8"}}
    got = intent.read_intent({"accelerate_config": acc})
    assert got.signs == ("/h/default_config.yaml: mixed_precision: fp8",)
    assert got.launch is not None and got.launch.how == "accelerate launch"


def test_a_trl_config_with_fp16_keeps_bf16_off() -> None:
    # TRL >= 0.19 turns an unset bf16 into True unless fp16 is set (trl cells)
    cfg_ = {"kind": "trl", "path": "t.yaml", "data": {"fp16": True}}
    assert intent.resolved(cfg_, {"trl": "1.16.0"})["data"]["bf16"] is False
    assert intent.resolved({**cfg_, "data": {}}, {"trl": "1.16.0"})["data"]["bf16"] is True


def test_coverage_says_what_it_does_with_each_kind_of_release() -> None:
    notes = {v: releases.coverage("accelerate", v) for v in ("garbage", "1.6.3", "99.0.0", "0.30.0")}
    assert {v: c.status for v, c in notes.items()} == {"garbage": "invalid", "1.6.3": "same-minor",
                                                       "99.0.0": "newer", "0.30.0": "older"}
    assert notes["1.6.3"].note == "accelerate 1.6.3: not observed; predicted from its minor's cell (1.6.0)"
    assert releases.as_observed({"accelerate": "1.6.3"})["accelerate"] == "1.6.3"


def test_a_trl_yaml_without_a_command_is_run_by_its_trainer_s_subcommand() -> None:
    # DPOConfig has beta / max_prompt_length, GRPOConfig num_generations, the rest is SFT
    for data, sub in (({"beta": 0.1}, "dpo"), ({"num_generations": 4}, "grpo"), ({"max_length": 9}, "sft")):
        [fix] = fixes.fixes_for({"packages": {"accelerate": ACC_NEW},
                                 "configs": [{"path": "t.yaml", "kind": "trl", "data": data}]}, "AO")
        assert fix.command[:4] == ("trl", sub, "--config", "t.yaml")


def test_split_stops_at_double_dash() -> None:
    form = parse(["torchrun", "--nproc_per_node", "2", "--", "t.py", "a"])
    assert (form.kind, form.target, form.args) == ("torchrun", ("t.py",), ("a",))


def test_llamafactory_cli_alone_gets_the_train_subcommand() -> None:
    facts = {"packages": {"accelerate": ACC_NEW}, "command": ["llamafactory-cli"],
             "configs": [{"path": "lf.yaml", "kind": "llamafactory", "data": {"fp8": True}}]}
    [fix] = fixes.fixes_for(facts, "AO")
    assert fix.command == ("llamafactory-cli", "train", "lf.yaml")


def test_the_llamafactory_te_fix_names_te_because_accelerate_would_take_torchao() -> None:
    # LLaMA-Factory's FP8_BACKEND is never read (lf0.9.5 cells), and with torchao installed Accelerate takes it first
    assert predict_mod.auto_backend(ACC_NEW, torchao=True, te=True) == "AO"
    assert fixes.llamafactory_fix("TE", "lf.yaml", ACC_NEW).env == {"ACCELERATE_MIXED_PRECISION": "fp8",
                                                                    "ACCELERATE_FP8_BACKEND": "TE"}
    # torchao: and the variable that keeps the FP8 weights in the optimizer where Accelerate's own config would not
    assert fixes.llamafactory_fix("AO", "lf.yaml", ACC_NEW).env == {
        "ACCELERATE_MIXED_PRECISION": "fp8", "ACCELERATE_FP8_ENABLE_FSDP_FLOAT8_ALL_GATHER": "false"}
    assert fixes.llamafactory_fix("AO", "lf.yaml", "1.11.0").env == {"ACCELERATE_MIXED_PRECISION": "fp8"}


def test_axolotl_outside_the_observed_releases_is_unknown() -> None:
    from fp8doctor.knowledge.frontends import predict_axolotl

    for version in (None, "0.18.0"):
        assert predict_axolotl({"axolotl": version}, {"fp8": True})["outcome"] == "unknown"


def test_the_config_step_shows_fp8_and_the_precision() -> None:
    lf = {"path": "lf.yaml", "kind": "llamafactory", "data": {"fp8": True, "bf16": True}}
    ds = {"path": "ds.json", "kind": "deepspeed", "data": {"fp8": True, "bf16": {"enabled": True}}}
    chain = precision.effective_precision({"configs": [lf, ds]})["chain"]
    assert [s["value"] for s in chain if s["stage"] == "config"] == ["bf16: true, fp8: true", "bf16: true"]


def test_between_two_observed_releases_names_the_nearest_ones() -> None:
    note = releases.coverage("transformers", "4.52.0").note
    assert note is not None and "(the lab ran 4.50.3 and 4.57.1)" in note


def test_the_fp16_note_needs_a_gpu_below_fp8() -> None:
    # Accelerate turns fp8 into fp16 below compute capability 8.9
    env = {"environ": {"mixed_precision": "fp8"}, "packages": {"accelerate": "1.15.0", "torchao": "0.18.0"}}
    a100 = {"visible": [{"cc": [8, 0]}]}
    assert precision.effective_precision({**env, "gpu": {"visible": [{"cc": [9, 0]}]}})["hardware_note"] is None
    assert "compute capability 8.0" in precision.effective_precision({**env, "gpu": a100})["hardware_note"]


def test_the_output_names_each_unobserved_release_and_the_accelerate_it_predicts_for() -> None:
    assert releases.coverage_notes({"accelerate": "1.6.3", "transformers": "4.57.1"}) == [
        "accelerate 1.6.3: not observed; predicted from its minor's cell (1.6.0)"]
    facts = {"environ": {"mixed_precision": "fp8"}, "packages": {"accelerate": "1.15.0", "torchao": "0.18.0"}}
    prediction = precision.effective_precision(facts)["prediction"]
    assert prediction == "FP8 active: Linear layers converted by Accelerate 1.15.0"
    with pytest.raises(ValueError, match="'x.y' is not a version"):
        releases.parse_what_if(["accelerate==x.y"])
    assert intent.truthy(" On ") and not intent.truthy("off")


def test_coverage_says_what_the_lab_never_saw() -> None:
    seen = releases.observed()["accelerate"]
    newer = releases.coverage("accelerate", "99.0.0")
    assert newer.status == "newer" and newer.note == (f"accelerate 99.0.0: newer than any release observed: "
                                                      f"predicted as {seen[-1]}")
    assert releases.coverage("accelerate", seen[-1]) == releases.Coverage("observed", None)
    assert releases.coverage("deepspeed", "1.0.0") == releases.Coverage("no-cell", "deepspeed: no release observed "
                                                                                   "by the lab")


def test_the_backend_the_user_named_is_the_fixes_backend() -> None:
    te = intent.Intent(backends={"TE": "env: ACCELERATE_FP8_BACKEND=TE"})
    assert intent.chosen_backend(te, {"torchao": "0.18.0"}, te_usable=False) == "TE"


def test_small_edges_the_mutants_showed() -> None:
    from fp8doctor.knowledge import evaluation, fp8_config_keys
    from fp8doctor.knowledge.command_forms import parse_process

    # fp8_config is copied into the launcher's arguments from accelerate 1.4 (fp8_config_keys probe)
    assert fp8_config_keys.exported("1.4.0", "amax_history_len", 16) == {"ACCELERATE_FP8_AMAX_HISTORY_LEN": "16"}
    assert fp8_config_keys.exported("1.3.0", "amax_history_len", 16) == {}
    # a .py script of an observed process runs under the interpreter that ran it
    form = parse_process(["train.py", "--lr", "1"], "/v/bin/python")
    assert (form.launcher, form.target, form.args) == (("/v/bin/python",), ("train.py",), ("--lr", "1"))
    assert evaluation.eval_in_fp8(None)["fp8"] is None
    assert capability.backend_available("torchao", {}) == (
        False, "torchao is not installed; install it with `pip install torchao`.")
    assert fixes.trl_command({"reward_funcs": ["r"]}) == "grpo" and fixes.trl_command({"beta": 0.1}) == "dpo"


def test_the_trl_console_command_alone_gets_the_trl_fix() -> None:
    facts = {"packages": {"accelerate": "1.15.0", "trl": "1.16.0"}, "configs": [],
             "command": ["trl", "sft", "--model_name_or_path", "m", "--bf16", "true"]}
    [fix] = fixes.fixes_for(facts, "AO")
    assert fix.key == "trl" and fix.command[:2] == ("trl", "sft") and "--mixed_precision" in fix.command


def test_the_optimizer_fix_names_the_own_accelerator_form() -> None:
    fix = fixes.optimizer_fix(parse(["python", "train.py"]), None)
    assert fix.note == f"or, {fixes.AO_OWN_CONFIG}" and "enable_fsdp_float8_all_gather=False" in fix.note
