"""Verdict rules, rendering and exit codes of `fp8doctor watch`, on hand-written observation dicts."""

from __future__ import annotations

import json

from fp8doctor.verdicts import FP8_NOT_TRAINED, FP8_OFF
from fp8doctor.watch.collect import process_from_records
from fp8doctor.watch.render import render
from fp8doctor.watch.runner import exit_code
from fp8doctor.watch.verdicts import (
    FP8_ACTIVE,
    NO_ACCELERATOR,
    NO_FORWARD,
    RAISED,
    SILENT_BF16,
    facts_from_processes,
    fix_hint,
    overall_verdict,
    process_verdict,
)

ELIGIBLE = [f"model.layers.{i}.mlp.up_proj" for i in range(4)]


def acc(arg=None, env=None, result_mp="bf16", fp8=False, backend="NO", handlers=(), trainer=None, error=None,
        fp8_layers=None, forwards=None):
    a = {
        "id": 0, "arg_mixed_precision": arg, "env": {"ACCELERATE_MIXED_PRECISION": env},
        "handlers": list(handlers),
        "fp8_handlers": [h for h in handlers if h.endswith("RecipeKwargs")],
        "trainer_args": trainer, "callers": ["train.py:10:main"], "prepares": [], "forwards": [],
    }
    if error:
        a["error"] = error
        return a
    a["result"] = {"mixed_precision": result_mp, "fp8_enabled": fp8, "fp8_backend": backend}
    if fp8_layers is not None:
        a["prepares"] = [{"models": [{"arg_index": 0, "class": "LlamaForCausalLM", "rule": "accelerate-ao",
                                      "eligible": ELIGIBLE, "fp8_layers": fp8_layers}]}]
    if forwards is not None:
        a["forwards"] = [{"arg_index": 0, "forwards": 3, "counter": {"fp8_module_forwards": forwards},
                          "fp8_active": forwards > 0}]
    return a


def proc(*accs, rank=None, env_start=None, training_args=(), pid=100):
    return {"pid": pid, "rank": rank, "argv": ["train.py"], "accelerators": list(accs),
            "env_at_start": {"ACCELERATE_MIXED_PRECISION": env_start}, "training_args": list(training_args),
            "losses": [], "exited": True, "versions": {"accelerate": "1.15.0", "transformers": "5.24.0"}}


TRAINER_BF16 = {"trainer_class": "Trainer", "args_class": "TrainingArguments", "bf16": True, "fp16": False,
                "mixed_precision": "bf16"}


def test_bf16_trainer_args_win_over_env_fp8():
    v = process_verdict(proc(acc(arg="bf16", env="fp8", handlers=["DistributedDataParallelKwargs"],
                                 trainer=TRAINER_BF16, fp8_layers=[], forwards=0)))
    assert v["verdict"] == SILENT_BF16
    assert v["winner"] == "TrainingArguments(bf16=True)"
    assert v["reason"] == ("TrainingArguments(bf16=True) passed mixed_precision='bf16' to Accelerator although "
                           "ACCELERATE_MIXED_PRECISION=fp8")


def test_env_set_after_training_arguments_read_it():
    targs = {"cls": "TrainingArguments", "env_before": {"ACCELERATE_MIXED_PRECISION": None},
             "env_after": {"ACCELERATE_MIXED_PRECISION": None}, "bf16": False, "mixed_precision": "no"}
    trainer = {**TRAINER_BF16, "bf16": False, "mixed_precision": "no"}
    v = process_verdict(proc(acc(arg="no", env="fp8", trainer=trainer, result_mp="no"), training_args=[targs]))
    assert v["verdict"] == FP8_OFF
    assert "set too late" in v["winner"]
    assert "after TrainingArguments read it (it saw unset)" in v["reason"]


def test_transformers4_rewrites_env():
    targs = {"cls": "TrainingArguments", "env_before": {"ACCELERATE_MIXED_PRECISION": "fp8"},
             "env_after": {"ACCELERATE_MIXED_PRECISION": "bf16"}, "bf16": True}
    v = process_verdict(proc(acc(arg=None, env="bf16"), env_start="fp8", training_args=[targs]))
    assert v["verdict"] == SILENT_BF16
    assert v["reason"].startswith("TrainingArguments(bf16=True) rewrote ACCELERATE_MIXED_PRECISION from 'fp8'")


def test_nothing_asked_for_fp8():
    v = process_verdict(proc(acc(arg=None, env=None, result_mp="no")))
    # It ran in fp32, not bf16: the word says FP8 was off, the reason names the precision.
    assert v["verdict"] == FP8_OFF and v["winner"] == "nothing asked for fp8"
    assert v["reason"].endswith("it ran in fp32 (mixed_precision 'no')")


def test_bf16_without_fp8_request_is_silent_bf16():
    v = process_verdict(proc(acc(arg=None, env=None, result_mp="bf16")))
    assert v["verdict"] == SILENT_BF16 and v["reason"].endswith("it ran in bf16")


def test_fp8_downgraded_by_accelerate():
    v = process_verdict(proc(acc(arg="fp8", env=None, result_mp="fp16")))
    assert v["verdict"] == FP8_OFF and v["winner"] == "Accelerate"


def test_raised_names_recipe_and_setter():
    err = {"type": "ValueError", "message": "Passing in an FP8 configuration requires setting `mixed_precision='fp8'`."}
    v = process_verdict(proc(acc(arg="bf16", env="fp8", handlers=["DistributedDataParallelKwargs", "TERecipeKwargs"],
                                 trainer=TRAINER_BF16, error=err)))
    assert v["verdict"] == RAISED
    assert v["error"]["type"] == "ValueError"
    assert "TERecipeKwargs reached an Accelerator whose mixed precision was 'bf16'" in v["reason"]
    assert "(passed by TrainingArguments(bf16=True))" in v["reason"]


def test_fp8_active_needs_layers_and_forwards():
    ok = process_verdict(proc(acc(arg="fp8", result_mp="fp8", fp8=True, backend="AO", fp8_layers=ELIGIBLE,
                                  forwards=12)))
    assert ok["verdict"] == FP8_ACTIVE
    assert ok["reason"].startswith("4 FP8 layers of 4 eligible Linear (accelerate-ao rule)")
    none = process_verdict(proc(acc(arg="fp8", result_mp="fp8", fp8=True, backend="AO", fp8_layers=[], forwards=0)))
    assert none["verdict"] == SILENT_BF16 and none["winner"] == "layer filter"
    unseen = process_verdict(proc(acc(arg="fp8", result_mp="fp8", fp8=True, backend="AO", fp8_layers=ELIGIBLE)))
    assert unseen["verdict"] == NO_FORWARD
    assert process_verdict(proc(acc(arg="fp8", result_mp="fp8", fp8=True, backend="AO")))["verdict"] == NO_FORWARD


def test_a_later_successful_accelerator_wins_over_an_earlier_failure():
    err = {"type": "ValueError", "message": "x"}
    v = process_verdict(proc(acc(arg="bf16", error=err, handlers=["AORecipeKwargs"]),
                             acc(arg="fp8", result_mp="fp8", fp8=True, backend="AO", fp8_layers=ELIGIBLE, forwards=4)))
    assert v["verdict"] == FP8_ACTIVE


def test_overall_is_the_worst_rank_and_helpers_are_not_judged():
    active = acc(arg="fp8", result_mp="fp8", fp8=True, backend="AO", fp8_layers=ELIGIBLE, forwards=4)
    launcher = {**proc(pid=1), "accelerators": []}
    both = overall_verdict([proc(active, rank=0, pid=2), proc(active, rank=1, pid=3), launcher])
    assert both["verdict"] == FP8_ACTIVE
    assert [r["rank"] for r in both["ranks"]] == [0, 1]
    assert both["helpers"] == [{"pid": 1, "argv": ["train.py"]}]
    crashed_rank = {**proc(rank=1, pid=3), "accelerators": [], "exited": False}
    mixed = overall_verdict([proc(active, rank=0, pid=2), crashed_rank])
    assert mixed["verdict"] == NO_ACCELERATOR
    assert mixed["reason"].startswith("rank 1: this process built no accelerate.Accelerator (the process ended")
    assert overall_verdict([launcher])["verdict"] == NO_ACCELERATOR
    assert overall_verdict([])["reason"].startswith("no Python process was observed")


def test_spawned_children_of_a_rank_are_helpers_not_ranks():
    active = acc(arg="fp8", result_mp="fp8", fp8=True, backend="AO", fp8_layers=ELIGIBLE, forwards=4)
    rank0 = proc(active, rank=0, pid=2)
    worker = {**proc(rank=0, pid=5), "accelerators": [], "ppid": 2}  # a spawned DataLoader worker inherits RANK
    early = {**proc(rank=1, pid=3), "accelerators": [], "exited": False, "ppid": 1}
    early_child = {**proc(rank=1, pid=6), "accelerators": [], "ppid": 3}
    v = overall_verdict([rank0, early, worker, early_child])
    assert [(r["rank"], r["pid"], r["verdict"]) for r in v["ranks"]] == [(0, 2, FP8_ACTIVE), (1, 3, NO_ACCELERATOR)]
    assert sorted(h["pid"] for h in v["helpers"]) == [5, 6]
    assert overall_verdict([rank0, worker])["verdict"] == FP8_ACTIVE


def test_fix_hint_for_installed_versions():
    p = proc(acc(arg="bf16", env="fp8", trainer=TRAINER_BF16, handlers=["AORecipeKwargs"]))
    facts = facts_from_processes([p])
    assert facts["packages"]["transformers"] == "5.24.0"
    assert facts["environ"]["accelerate_fp8"]["ACCELERATE_FP8_BACKEND"] == "AO"
    lines = fix_hint(overall_verdict([p]), facts)
    assert "#   bf16: false" in lines and "distributed_type: 'NO'" in lines
    assert "  backend: AO" in lines
    assert fix_hint({"verdict": FP8_ACTIVE}, facts) == []


def test_collect_folds_records_and_survives_a_torn_line():
    records = [
        {"kind": "process", "pid": 7, "ppid": 1, "argv": ["x.py"], "rank_env": {"RANK": "1", "LOCAL_RANK": "1"},
         "env_at_start": {}},
        {"kind": "accelerator", "id": 0, "arg_mixed_precision": "fp8", "result": {"fp8_enabled": True}},
        {"kind": "prepare", "accelerator": 0, "models": [{"arg_index": 0, "fp8_layers": ["a"], "eligible": ["a"]}]},
        {"kind": "forwards", "accelerator": 0, "arg_index": 0, "forwards": 3, "fp8_active": True,
         "counter": {"fp8_module_forwards": 3}},
        {"kind": "loss", "source": "trainer.log", "step": 1, "values": {"loss": 5.5}},
    ]
    p = process_from_records(records)
    assert (p["pid"], p["rank"], p["local_rank"], p["exited"]) == (7, 1, 1, False)
    assert p["accelerators"][0]["prepares"][0]["models"][0]["fp8_layers"] == ["a"]
    assert process_verdict(p)["verdict"] == FP8_ACTIVE


def _result(verdict="silent-bf16", **kw):
    base = {"command": ["python", "train.py", "--token", "hf_abcdefghijklmnopqrstuvwxyz123"], "exit_code": 0,
            "signal": None, "timed_out": False, "timeout_s": None, "interrupted": False, "duration_s": 1.0,
            "verdict": verdict, "reason": "why", "ranks": [], "helpers": [], "fix": ["bf16: false"],
            "processes": []}
    return {**base, **kw}


def test_render_formats_are_redacted():
    result = _result()
    for fmt in ("text", "md", "json"):
        out = render(result, fmt)
        assert "hf_abcdefghijklmnopqrstuvwxyz123" not in out
        assert "***REDACTED***" in out
    md = render(result, "md")
    assert "**Verdict: `silent-bf16`**: why" in md and "```\nbf16: false\n```" in md
    assert json.loads(render(result, "json"))["verdict"] == "silent-bf16"


def test_exit_codes():
    assert exit_code(_result("fp8-active")) == 0
    assert exit_code(_result("silent-bf16")) == 1
    assert exit_code(_result("fp8-active", exit_code=3)) == 3
    assert exit_code(_result("fp8-active", exit_code=None, signal="SIGKILL")) == 137
    assert exit_code(_result("fp8-active", timed_out=True, exit_code=None, signal="SIGTERM")) == 124


def _outside(count: int, fp8_weights: int) -> dict:
    a = acc(arg="fp8", result_mp="fp8", fp8=True, backend="AO", fp8_layers=ELIGIBLE, forwards=12)
    names = [f"{n}.weight" for n in ELIGIBLE][:fp8_weights] + [f"x{i}.bias" for i in range(count - fp8_weights)]
    a["prepares"][0]["models"][0]["outside_optimizer"] = {"count": count, "fp8_weights": fp8_weights,
                                                          "names": names}
    return a


def test_fp8_weights_outside_the_optimizer_are_not_trained_and_get_the_optimizer_fix():
    v = overall_verdict([proc(_outside(5, 4))])
    assert v["verdict"] == FP8_NOT_TRAINED
    assert "the optimizer does not hold 4 FP8 layers' weights (5 trainable parameters outside it, e.g. " \
           "model.layers.0.mlp.up_proj.weight, model.layers.1.mlp.up_proj.weight, " \
           "model.layers.2.mlp.up_proj.weight)" in v["reason"]
    assert exit_code({"verdict": v["verdict"]}) == 1
    fix = fix_hint(v, {"command": ["python", "train.py"]})
    assert fix[-2:] == ["export ACCELERATE_FP8_ENABLE_FSDP_FLOAT8_ALL_GATHER=false", "python train.py"]
    # A worse rank still decides the command's verdict.
    silent = proc(acc(arg="bf16", env="fp8", fp8_layers=[], forwards=0), rank=1, pid=101)
    assert overall_verdict([proc(_outside(5, 4), rank=0), silent])["verdict"] == SILENT_BF16


def test_other_parameters_outside_the_optimizer_leave_fp8_active():
    assert process_verdict(proc(_outside(2, 0)))["verdict"] == FP8_ACTIVE
    assert process_verdict(proc(_outside(0, 0)))["verdict"] == FP8_ACTIVE


def test_not_trained_fix_follows_whose_config_it_was():
    acc_own = _outside(5, 4)
    acc_own["ao_config"] = {"all_gather": True, "user_config": True}
    v = overall_verdict([proc(acc_own)])
    assert v["verdict"] == FP8_NOT_TRAINED and "your own torchao config has enable_fsdp_float8_all_gather=True" \
        in v["reason"]
    fix = fix_hint(v, {"command": ["python", "train.py"]})
    assert fix[-1] == "python train.py" and not any(line.startswith("export") for line in fix)
    assert any("Float8LinearConfig(enable_fsdp_float8_all_gather=False)" in line for line in fix)
    fix = fix_hint(v, {"command": ["axolotl", "train", "cfg.yaml"], "frontend": "axolotl"})
    assert "#   fp8_enable_fsdp_float8_all_gather: false" in fix and fix[-1] == "axolotl train cfg.yaml"
    # AORecipeKwargs() (accelerate 1.13+ builds its config from the variable): the variable is the fix.
    acc_default = _outside(5, 4)
    acc_default["ao_config"] = {"all_gather": True, "user_config": False}
    v = overall_verdict([proc(acc_default)])
    assert "Accelerate's torchao config has" in v["reason"]
    assert fix_hint(v, {"command": ["python", "train.py"]})[-2] == \
        "export ACCELERATE_FP8_ENABLE_FSDP_FLOAT8_ALL_GATHER=false"
    # `accelerate launch` exports the flag from its own option (default true) over the shell's: the option.
    fix = fix_hint(v, {"command": ["accelerate", "launch", "--config_file", "fp8.yaml", "train.py"]})
    assert not any(line.startswith("export") for line in fix)
    assert fix[-1] == "accelerate launch --config_file fp8.yaml --fp8_enable_fsdp_float8_all_gather false train.py"


def test_fp8_layers_biases_outside_are_not_counted_as_weights():
    from fp8doctor.observe import fp8_weights_among

    layers = ["a.q", "a.k"]
    assert fp8_weights_among(["a.q.weight", "a.q.bias", "a.k.weight", "a.v.weight", "a.qq.weight"], layers) == [
        "a.q.weight", "a.k.weight"]
