"""LLaMA-Factory: real `llamafactory-cli train` runs on a tiny model, training config x environment x launch form.

Run by a cell's python (LLaMA-Factory installed there). It builds, in a temporary directory and with nothing
downloaded, a tiny Llama (hidden 64, intermediate 128, two layers: 14 Linear layers, all dims multiples of 16), a
byte-level BPE tokenizer and an alpaca-style dataset registered in its own `dataset_info.json`, then runs each case
as a child process of the cell's own `llamafactory-cli` (or `accelerate launch` of it) for two optimizer steps.
The observer in `lf_site/` (on the children's PYTHONPATH only) records what TrainingArguments left in the
environment, what the Accelerator was given and decided, and the FP8 layers after `prepare`; nothing in
LLaMA-Factory, transformers or Accelerate is changed. torchao runs with emulate=True (LAB_AO_EMULATE=1).

    python lab/probes/llamafactory.py [--only REGEX] [--timeout S]   -> one JSON object on stdout
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
SITE_DIR = HERE / "lf_site"
BIN = Path(sys.executable).parent
STEPS = 2
RUN_TIMEOUT_S = 420
CPU_ADAPTATIONS = [
    "torchvision blocked and torchaudio an empty module in every run (PyPI's wheels are CUDA builds that cannot "
    "load with torch+cpu; see lf_site/lab_cpu_shims.py)",
    "use_cpu: true in the training config (transformers 4.x refuses bf16 without a GPU otherwise)",
    "torchao Float8LinearConfig built with emulate=True (LAB_AO_EMULATE=1)",
]
LOG_TAIL = 12

# The reference report's config (TE or torchao, bf16: true) and the variants with bf16 off.
CONFIGS = {
    "te_bf16": {"fp8": True, "fp8_backend": "te", "bf16": True},
    "ao_bf16": {"fp8": True, "fp8_backend": "torchao", "bf16": True},
    "te_nobf16": {"fp8": True, "fp8_backend": "te", "bf16": False},
    "ao_nobf16": {"fp8": True, "fp8_backend": "torchao", "bf16": False},
    "auto_nobf16": {"fp8": True, "fp8_backend": "auto", "bf16": False},
}
ENVS = {
    "env_none": {},
    "env_bf16": {"ACCELERATE_MIXED_PRECISION": "bf16"},
    "env_fp8": {"ACCELERATE_MIXED_PRECISION": "fp8"},
    "env_fp8_ao": {"ACCELERATE_MIXED_PRECISION": "fp8", "ACCELERATE_FP8_BACKEND": "AO"},
}
ACCELERATE_YAMLS = {
    "fp8_ao": "compute_environment: LOCAL_MACHINE\ndistributed_type: 'NO'\nmixed_precision: fp8\n"
              "fp8_config:\n  backend: AO\nnum_machines: 1\nnum_processes: 1\nmachine_rank: 0\nuse_cpu: true\n",
    "bf16": "compute_environment: LOCAL_MACHINE\ndistributed_type: 'NO'\nmixed_precision: bf16\n"
            "num_machines: 1\nnum_processes: 1\nmachine_rank: 0\nuse_cpu: true\n",
}
LAUNCHES = ("cli", "accelerate_fp8_ao", "accelerate_bf16")
# (config, environment, launch), ~1-2 minutes each on 2 shared cores: the reference configs and the bf16-off
# variant under the plain CLI, the variable a user would export, and both accelerate launch forms.
CASES = (
    [(c, "env_none", "cli") for c in ("ao_bf16", "te_bf16", "ao_nobf16", "auto_nobf16")]
    + [("ao_nobf16", "env_fp8", "cli"), ("ao_bf16", "env_fp8_ao", "cli")]
    + [("ao_bf16", "env_none", "accelerate_fp8_ao"), ("ao_nobf16", "env_none", "accelerate_fp8_ao"),
       ("ao_bf16", "env_none", "accelerate_bf16")]
)

TOKEN_TEXT = ("Human: Assistant: the quick brown fox jumps over the lazy dog. write say tell give list name "
              "one two three four five six seven eight nine ten red green blue hello world answer question")


def build_assets(root: Path) -> dict:
    """Tiny model + tokenizer + dataset, all made here; returns the paths the configs name."""
    sys.path.insert(0, str(SITE_DIR))
    import lab_cpu_shims

    lab_cpu_shims.install()
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    model_dir, data_dir = root / "model", root / "data"
    model_dir.mkdir()
    data_dir.mkdir()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([TOKEN_TEXT] * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<pad>")
    fast.save_pretrained(model_dir)
    vocab = -(-len(fast) // 16) * 16
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
                         tie_word_embeddings=False, eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id,
                         bos_token_id=None)
    LlamaForCausalLM(config).save_pretrained(model_dir)
    words = TOKEN_TEXT.split()[3:]
    rows = [{"instruction": f"say {words[i]} {words[i + 1]}", "input": "",
             "output": f"{words[i + 2]} {words[i + 3]} {words[i + 4]}"} for i in range(16)]
    (data_dir / "tiny.json").write_text(json.dumps(rows))
    (data_dir / "dataset_info.json").write_text(json.dumps({"tiny": {"file_name": "tiny.json"}}))
    for name, text in ACCELERATE_YAMLS.items():
        (root / f"accelerate_{name}.yaml").write_text(text)
    linear = sum(1 for m in LlamaForCausalLM(config).modules() if isinstance(m, torch.nn.Linear))
    return {"model": str(model_dir), "data": str(data_dir),
            "summary": {"hidden": 64, "intermediate": 128, "layers": 2, "vocab": vocab, "linear_layers": linear}}


def lf_config(case_dir: Path, assets: dict, fp8_keys: dict) -> Path:
    import yaml

    cfg = {
        "model_name_or_path": assets["model"], "stage": "sft", "do_train": True, "finetuning_type": "full",
        **fp8_keys,
        "dataset": "tiny", "dataset_dir": assets["data"], "template": "default", "cutoff_len": 32,
        "max_samples": 8, "overwrite_cache": True, "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 1, "max_steps": STEPS, "logging_steps": 1, "learning_rate": 1.0e-4,
        "save_strategy": "no", "report_to": "none", "output_dir": str(case_dir / "out"),
        "disable_gradient_checkpointing": True, "dataloader_num_workers": 0,
        "use_cpu": True,  # CPU adaptation: transformers 4.x refuses bf16 without a GPU unless use_cpu is set
    }
    path = case_dir / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def command(launch: str, cfg: Path, root: Path) -> list[str]:
    cli = str(BIN / "llamafactory-cli")
    if launch == "cli":
        return [cli, "train", str(cfg)]
    yaml_name = launch.removeprefix("accelerate_")
    return [str(BIN / "accelerate"), "launch", "--config_file", str(root / f"accelerate_{yaml_name}.yaml"),
            cli, "train", str(cfg)]


def child_env(root: Path, extra: dict, obs: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ACCELERATE_", "FP8_", "HF_", "TRANSFORMERS_", "PYTHONPATH", "WANDB_", "LAB_"))}
    env.update({
        "HF_HOME": str(root / "hf_home"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(SITE_DIR), "LAB_LF_OBS": str(obs), "LAB_AO_EMULATE": "1",
        "LAB_CPU_SHIMS": "1",
        "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "WANDB_DISABLED": "true",
        "CUDA_VISIBLE_DEVICES": "",
    })
    env.update(extra)
    return env


EXC_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning)|AssertionError)(?::\s?(.*))?$")
LF_FP8_LINE = re.compile(r"llamafactory\.train\.fp8_utils:\d+ >> (.*)$")  # LLaMA-Factory's own FP8 module logger


def last_exception(lines: list[str]) -> dict | None:
    """The training process's exception: the last exception line that is not `accelerate launch` reporting its
    child's exit status (CalledProcessError), which comes after the child's own traceback."""
    found = []
    for line in lines:
        m = EXC_LINE.match(line.strip())
        if m:
            found.append({"type": m.group(1).rsplit(".", 1)[-1], "message": (m.group(2) or "").strip()})
    own = [f for f in found if f["type"] != "CalledProcessError"]
    return (own or found or [None])[-1]


def _stage(events: list[dict], steps: int) -> str:
    """Where a failed run stopped, from what the observer saw."""
    kinds = [e["event"] for e in events]
    if any(e["event"] == "accelerator_init" and "raised" in e for e in events):
        return "accelerator_init"
    if any(e["event"] == "prepare" and "raised" in e for e in events):
        return "prepare"
    if "training_args" not in kinds:
        return "arguments"
    if "accelerator_init" not in kinds:
        return "trainer_init"
    return "training" if steps else "before_training"


def summarize(events: list[dict]) -> dict:
    out: dict = {}
    targs = [e for e in events if e["event"] == "training_args"]
    if targs:
        out["training_args"] = {k: targs[-1].get(k) for k in ("bf16", "env_before", "env_after")}
    inits = [e for e in events if e["event"] == "accelerator_init"]
    if inits:
        last = inits[-1]
        out["accelerators"] = len(inits)
        out["accelerator_args"] = {"mixed_precision": last.get("mixed_precision_arg"),
                                   "kwargs_handlers": last.get("kwargs_handlers")}
        out["env_at_accelerator"] = last.get("env")
        out["accelerator_caller"] = (last.get("callers") or [""])[-1]
        for key in ("mixed_precision", "fp8_backend", "fp8_enabled"):
            out[key] = last.get(key)
    raised = [e["raised"] for e in events if e["event"] in ("accelerator_init", "prepare") and "raised" in e]
    if raised:
        out["library_raised"] = raised[-1]
    preps = [e for e in events if e["event"] == "prepare" and "raised" not in e]
    if preps:
        out["fp8_layers"] = max((e.get("fp8_layers") or 0) for e in preps)
        out["ao_emulate"] = next((e.get("emulate") for e in preps if e.get("emulate") is not None), None)
    out["steps"] = sum(1 for e in events if e["event"] == "backward")
    out["processes"] = len({e["pid"] for e in events})
    errors = [e for e in events if e["event"] == "observer_error"]
    if errors:
        out["observer_errors"] = errors
    return out


def run_case(root: Path, assets: dict, config: str, env_name: str, launch: str, timeout: float) -> dict:
    case_dir = root / f"{config}.{env_name}.{launch}"
    case_dir.mkdir()
    obs = case_dir / "obs.jsonl"
    cfg = lf_config(case_dir, assets, CONFIGS[config])
    cmd = command(launch, cfg, root)
    shown = " ".join(Path(a).name if a.startswith(str(root)) or a.startswith(str(BIN)) else a for a in cmd)
    inputs = {"config": config, "fp8_keys": CONFIGS[config], "env_name": env_name, "env": ENVS[env_name],
              "launch": launch, "command": shown}
    if launch != "cli":
        inputs["accelerate_config"] = ACCELERATE_YAMLS[launch.removeprefix("accelerate_")]
    t = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=case_dir, env=child_env(root, ENVS[env_name], obs), capture_output=True,
                              text=True, timeout=timeout)
        rc, text = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc, text = None, (exc.stdout or b"").decode(errors="replace") + (exc.stderr or b"").decode(errors="replace")
    wall = time.monotonic() - t
    text = text.replace(str(root), "<tmp>").replace(str(BIN), "<cell>/bin")
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    events = [json.loads(ln) for ln in obs.read_text().splitlines()] if obs.exists() else []
    result: dict = {"inputs": inputs, "returncode": rc, **summarize(events)}
    result["lf_fp8_log"] = list(dict.fromkeys(m.group(1).strip() for ln in lines if (m := LF_FP8_LINE.search(ln))))
    if rc is None:
        result["outcome"] = "timed_out"
    elif rc == 0:
        result["outcome"] = "ok" if result["steps"] >= STEPS else "finished_without_steps"
    else:
        exc = last_exception(lines)
        result["outcome"] = "raised" if exc else "crashed"
        if exc:
            result.update({"type": exc["type"], "message": exc["message"]})
        result["stage"] = _stage(events, result["steps"])
        result["last_line"] = lines[-1] if lines else ""
    if result["outcome"] == "ok":
        result["trained_in"] = "fp8" if result.get("fp8_layers") else result.get("mixed_precision")
    print(f"[lf probe] {config}.{env_name}.{launch}: {result['outcome']} {result.get('trained_in', '')} "
          f"({wall:.0f} s)", file=sys.stderr, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="regex on 'config.env.launch' case ids")
    parser.add_argument("--timeout", type=float, default=RUN_TIMEOUT_S)
    args = parser.parse_args()
    try:
        metadata.version("llamafactory")
    except metadata.PackageNotFoundError:
        print(json.dumps({"cases": [{"inputs": {}, "outcome": "absent", "message": "llamafactory not installed"}]}))
        return
    pattern = re.compile(args.only)
    with tempfile.TemporaryDirectory(prefix="lab-lf-") as tmp:
        root = Path(tmp)
        assets = build_assets(root)
        setup = {"steps": STEPS, "cpu_adaptations": CPU_ADAPTATIONS, "tiny_model": assets["summary"]}
        cases = [{**run_case(root, assets, c, e, la, args.timeout), "setup": setup}
                 for c, e, la in CASES if pattern.search(f"{c}.{e}.{la}")]
    json.dump({"cases": cases}, sys.stdout, sort_keys=True, default=str)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
