"""Render docs/frontends.md from the frontend cells' observations: `python lab/frontends_table.py [--check]`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

LAB = Path(__file__).resolve().parent
OBSERVATIONS = LAB / "observations"
TARGET = LAB.parent / "docs" / "frontends.md"
DOC_TOP = LAB / "frontends_doc.md"  # the hand-written part: command forms, fixes, what is not observed yet

HEAD = ["cell", "TRL", "transformers", "accelerate", "config", "bf16 unset -> holds", "env fp8, bf16 unset: "
        "Accelerator gets (FP8 layers)", "env fp8, bf16=False: Accelerator gets (FP8 layers)"]


def _find(cases: list[dict], **inputs: object) -> dict | None:
    for case in cases:
        if all(case["inputs"].get(k) == v for k, v in inputs.items()):
            return case
    return None


def _trainer(case: dict | None) -> str:
    if case is None:
        return ""
    if case.get("outcome") != "ok":
        return f"raised {case.get('type')}"
    calls = case.get("accelerator_calls") or [{}]
    passed = (calls[0].get("received") or {}).get("mixed_precision")
    how = "env" if passed == "<not passed>" else f"mixed_precision={passed!r}"
    return f"{case.get('mixed_precision')} via {how} ({case.get('fp8_layers')})"


def _config_only(case: dict | None) -> str:
    """A config without a trainer: what the Trainer would hand on (transformers 5: mixed_precision; 4.x: the
    variable TrainingArguments left)."""
    if case is None or case.get("outcome") != "ok":
        return "" if case is None else f"raised {case.get('type')}"
    mp = case["config"].get("mixed_precision")
    if mp and mp != "<absent>":
        return f"config mixed_precision={mp!r}"
    return f"config leaves ACCELERATE_MIXED_PRECISION={case['env_after_config'].get('ACCELERATE_MIXED_PRECISION')!r}"


def trl_rows(records: list[dict]) -> list[list[str]]:
    rows = []
    for rec in records:
        cases = rec.get("probes", {}).get("trl_configs")
        if not cases:
            continue
        v = rec["versions"]
        for name in ("SFTConfig", "DPOConfig", "GRPOConfig"):
            unset = _find(cases, config=name, bf16=None, env_name="env_none")
            held = (unset or {}).get("config", {}).get("bf16", (unset or {}).get("type", ""))
            trainer = name == "SFTConfig"
            cells = [_trainer(_find(cases, config=name, bf16=b, env_name="env_fp8", trainer=True)) if trainer
                     else _config_only(_find(cases, config=name, bf16=b, env_name="env_fp8", trainer=None))
                     for b in (None, False)]
            rows.append([rec["cell"], v.get("trl") or "", v.get("transformers") or "", v.get("accelerate") or "",
                         name, str(held), *cells])
    return rows


PEFT_HEAD = ["cell", "PEFT", "accelerate", "order (exported)", "LoRA rank", "base layers q/v/down (layer 0)",
             "lora_A/lora_B", "trainable parameters outside the optimizer after prepare",
             "trainable parameters changed by one step", "Float8Linear in the model"]


def peft_rows(records: list[dict]) -> list[list[str]]:
    rows = []
    for rec in records:
        for case in rec.get("probes", {}).get("peft_fp8", []):
            inp = case["inputs"]
            exported = " ".join(f"{k}={v}" for k, v in (inp.get("env") or {}).items())
            order = f"{inp['order']} ({exported})" if exported else inp["order"]
            head = [rec["cell"], rec["versions"].get("peft") or "", rec["versions"].get("accelerate") or "", order,
                    str(inp["r"])]
            if case.get("outcome") != "ok":
                rows.append(head + [f"raised {case.get('type')} in {case.get('stage')}: {case.get('message')}",
                                    "", "", "", ""])
                continue
            layers = case["layers"]
            bases = "/".join(layers[t]["base_layer"] for t in ("q_proj", "v_proj", "down_proj"))
            adapters = sorted({layers[t][k] for t in ("q_proj", "v_proj", "down_proj") for k in ("lora_A", "lora_B")})
            rows.append(head + [bases, ", ".join(adapters), str(case.get("trainable_outside_optimizer", "-")),
                                f"{case['changed']} of {case['trainable']}", str(layers["float8_linear"])])
    return rows


AXOLOTL_HEAD = ["cell", "axolotl", "config", "path (exported)", "validated fp8 / bf16 (after normalize)",
                "ACCELERATE_MIXED_PRECISION after prepare_optim_env", "FP8 warnings logged"]


def axolotl_rows(records: list[dict]) -> list[list[str]]:
    rows = []
    for rec in records:
        for case in rec.get("probes", {}).get("axolotl_config", []):
            inp = case["inputs"]
            exported = ", ".join(f"{k}={v}" for k, v in inp["env"].items())
            path = inp.get("via", "validate_config") + (f" ({exported})" if exported else "")
            head = [rec["cell"], rec["versions"].get("axolotl") or "", inp["precision"], path]
            if case.get("outcome") != "ok":
                rows.append(head + [f"raised {case.get('type')} in {case.get('stage')}: {case.get('message')}", "",
                                    ""])
                continue
            warned = sorted({w.split(".")[0] for w in case["warnings"] if "fp8" in w.lower()})
            validated = case.get("validated", case["normalized"])["fp8"]
            rows.append(head + [f"{validated} / {case['normalized']['bf16']}",
                                str(case["env_after"].get("ACCELERATE_MIXED_PRECISION")), "; ".join(warned) or "-"])
    return rows


AXOLOTL_OPTIMIZER_HEAD = ["cell", "axolotl", "accelerate", "torchao", "fp8_enable_fsdp_float8_all_gather",
                          "its Float8LinearConfig's enable_fsdp_float8_all_gather", "FP8 layers",
                          "FP8 weights outside the optimizer", "parameters changed by 2 steps (of trainable)"]


def axolotl_optimizer_rows(records: list[dict]) -> list[list[str]]:
    rows = []
    for rec in records:
        v = rec["versions"]
        for case in rec.get("probes", {}).get("axolotl_optimizer", []):
            head = [rec["cell"], v.get("axolotl") or "", v.get("accelerate") or "", v.get("torchao") or "",
                    "unset" if case["inputs"]["all_gather"] is None else str(case["inputs"]["all_gather"]).lower()]
            if case.get("outcome") != "ok":
                rows.append(head + [f"raised {case.get('type')} in {case.get('stage')}: {case.get('message')}", "",
                                    "", ""])
                continue
            rows.append(head + [str(case["handler_config"]["enable_fsdp_float8_all_gather"]),
                                str(case["fp8_layers"]), str(len(case["fp8_weights_outside_optimizer"])),
                                f"{case['held_changed'] + len(case['outside_changed'])} of {case['trainable_params']}"])
    return rows


def _table(head: list[str], body: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                     + ["| " + " | ".join(r) + " |" for r in body])


def render(records: list[dict]) -> str:
    top = DOC_TOP.read_text()
    top = top.replace("<!-- TRL TABLE -->", _table(HEAD, trl_rows(records)))
    top = top.replace("<!-- AXOLOTL TABLE -->", _table(AXOLOTL_HEAD, axolotl_rows(records)))
    top = top.replace("<!-- AXOLOTL OPTIMIZER TABLE -->",
                      _table(AXOLOTL_OPTIMIZER_HEAD, axolotl_optimizer_rows(records)))
    return top.replace("<!-- PEFT TABLE -->", _table(PEFT_HEAD, peft_rows(records))).rstrip("\n") + "\n"


def load() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(OBSERVATIONS.glob("*.json"))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/frontends.md is out of date")
    args = parser.parse_args(argv)
    text = render(load())
    if args.check:
        if (TARGET.read_text() if TARGET.exists() else "") != text:
            print("docs/frontends.md is out of date: run python lab/frontends_table.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
