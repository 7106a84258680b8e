"""The engine's chain (knowledge/engine.py): each stage that decided the precision, named as the output shows it,
and the outcomes it gives on releases and stacks the lab observed or cannot observe (TE, MS-AMP). Each case killed a
mutant that survived `python benchmarks/mutation.py` (docs/mutation.md)."""

from __future__ import annotations

from fp8doctor.knowledge import intent
from fp8doctor.knowledge import predict as predict_mod
from fp8doctor.knowledge.engine import Setup, Stack, predict
from fp8doctor.knowledge.releases import observed

ACC_NEW, TF5 = observed()["accelerate"][-1], observed()["transformers"][-1]


def test_the_accelerator_step_names_where_its_precision_came_from() -> None:
    stack = Stack(accelerate=ACC_NEW, torchao="0.18.0")
    sources = {how: predict(stack, Setup(**setup))["chain"][-1]["source"] for how, setup in (
        ("arg", {"mp_arg": "bf16"}), ("env", {"env": {"ACCELERATE_MIXED_PRECISION": "fp8"}}), ("none", {}))}
    assert sources == {"arg": "argument", "env": "ACCELERATE_MIXED_PRECISION", "none": "default"}


def test_an_installed_te_or_ms_amp_leaves_the_accelerator_unpredicted() -> None:
    # the lab's cells have neither: nothing observed to predict from
    for extra in ({"msamp": "0.4.0"}, {"transformer_engine": "2.9.0"}):
        got = predict(Stack(accelerate=ACC_NEW, torchao="0.18.0", **extra), Setup(mp_arg="fp8"))
        assert got["outcome"] == "unknown"


def test_stack_reads_distribution_and_module_names() -> None:
    for name in ("transformer-engine", "transformer_engine", "transformer-engine-torch"):
        assert Stack.of({name: "2.9.0"}).transformer_engine == "2.9.0"
    assert Stack.of({"ms-amp": "0.4.0"}).msamp == "0.4.0" and Stack.of({"msamp": ""}).msamp is None


def test_llamafactory_steps_are_named_llamafactory() -> None:
    te = {"fp8": True, "fp8_backend": "te", "stage": "sft"}
    raised = predict(Stack(accelerate=ACC_NEW, transformers="4.57.1", torchao="0.18.0", llamafactory="0.9.5"),
                     Setup(frontend="llamafactory", precision="bf16", lf_fp8=te))
    assert raised["type"] == "ModuleNotFoundError" and raised["chain"][-1]["stage"] == "LLaMA-Factory"
    # an unobserved LLaMA-Factory on transformers 4: whether it sets the variable decides, so no claim
    unknown = predict(Stack(accelerate=ACC_NEW, transformers="4.57.1", torchao="0.18.0"),
                      Setup(frontend="llamafactory", precision="bf16", lf_fp8={"fp8": True}))
    assert unknown["outcome"] == "unknown" and unknown["chain"][-1]["stage"] == "LLaMA-Factory"
    assert "whether it sets ACCELERATE_MIXED_PRECISION=fp8 decides" in unknown["chain"][-1]["value"]
    # 0.9.5 sets the variable in its Trainer (lf0.9.5 cells)
    sets = predict(Stack(accelerate=ACC_NEW, transformers="4.57.1", torchao="0.18.0", llamafactory="0.9.5"),
                   Setup(frontend="llamafactory", lf_fp8={"fp8": True, "fp8_backend": "torchao"}))
    step = next(s for s in sets["chain"] if s["stage"] == "LLaMA-Factory")
    assert step["value"].startswith("ACCELERATE_MIXED_PRECISION=fp8") and sets["fp8"] is True


def test_the_launch_step_names_the_launcher() -> None:
    launch = {"distributed_type": "NO", "mixed_precision": "bf16"}
    got = predict(Stack(accelerate=ACC_NEW, torchao="0.18.0"), Setup(launch_yaml=launch))
    assert got["chain"][0] == {"stage": "launch", "source": "accelerate launch --config_file",
                               "value": "ACCELERATE_MIXED_PRECISION=bf16"}


def test_a_llamafactory_stage_without_fp8_support_sets_nothing() -> None:
    # LLaMA-Factory wires fp8 into its pt and sft trainers only: a dpo config's fp8 leaves the variable alone
    data = {"fp8": True, "fp8_backend": "torchao", "stage": "dpo", "bf16": False}
    got = intent.read_intent({"configs": [{"path": "lf.yaml", "kind": "llamafactory", "data": data}]})
    assert dict(got.lf_fp8) == {"fp8": True, "fp8_backend": "torchao", "stage": "dpo"}
    out = predict(Stack(accelerate=ACC_NEW, transformers="4.57.1", torchao="0.18.0", llamafactory="0.9.5"),
                  got.setup())
    assert out["reaches"] == "no" and not any(s["stage"] == "LLaMA-Factory" for s in out["chain"])


def test_accelerate_1_4_asserts_a_cuda_build_only_without_one() -> None:
    # acc1.4 cell (CPU torch): AssertionError "Torch not compiled with CUDA enabled"; with CUDA, nothing observed
    stack = Stack(accelerate="1.4.0", torchao="0.18.0")
    assert predict(stack, Setup(mp_arg="fp8"))["type"] == "AssertionError"
    assert predict(Stack(accelerate="1.4.0", torchao="0.18.0", cuda_build=True), Setup(mp_arg="fp8"))["outcome"] == (
        "unknown")


def test_a_refused_launch_says_why_and_an_accepted_one_what_it_exported() -> None:
    # every release refuses a config without distributed_type (launch_config probe)
    got = predict(Stack(accelerate=ACC_NEW), Setup(launch_yaml={"mixed_precision": "fp8"}))
    assert (got["stage"], got["type"]) == ("launch", "ValueError")
    assert got["message"] == predict_mod.LAUNCH_NEEDS_DISTRIBUTED_TYPE
    got = predict(Stack(accelerate=ACC_NEW), Setup(launch_yaml={"distributed_type": "NO"}))
    assert got["chain"][0]["value"] == "no ACCELERATE_MIXED_PRECISION" and got["reaches"] == "no"


def test_an_injected_torchao_recipe_without_torchao_is_unknown_with_its_chain() -> None:
    got = predict(Stack(accelerate=ACC_NEW, transformers=TF5), Setup(frontend="trainer", patch="always_append"))
    assert got["outcome"] == "unknown" and [s["stage"] for s in got["chain"]] == ["TrainingArguments"]


def test_an_unobserved_llamafactory_is_predicted_where_its_two_behaviours_agree() -> None:
    # LLaMA-Factory not installed here, fp8 already exported and no bf16: 0.9.4 (sets nothing) and 0.9.5 (sets fp8)
    # reach the same Accelerator
    got = predict(Stack(accelerate=ACC_NEW, transformers="4.57.1", torchao="0.18.0"),
                  Setup(frontend="llamafactory", env={"ACCELERATE_MIXED_PRECISION": "fp8"}, lf_fp8={"fp8": True}))
    assert got["outcome"] == "ok" and got["fp8"] is True
    assert "the same whether it sets ACCELERATE_MIXED_PRECISION=fp8 or not" in got["chain"][1]["value"]
