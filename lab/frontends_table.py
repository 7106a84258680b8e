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


def render(records: list[dict]) -> str:
    table = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    table += ["| " + " | ".join(r) + " |" for r in trl_rows(records)]
    top = DOC_TOP.read_text()
    return top.replace("<!-- TRL TABLE -->", "\n".join(table)).rstrip("\n") + "\n"


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
