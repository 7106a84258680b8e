"""`fp8doctor inspect`: load -> analyze -> render."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from typing import Any

from fp8doctor.needs import install_hint
from fp8doctor.system import limits
from fp8doctor.system.errors import UsageError


def inspect_model(model: str, *, gpu: str | None, batch: int, seq_len: int) -> dict[str, Any]:
    """The analysis of one model config (also the report's inspect part)."""
    from fp8doctor.facts.packages import package_versions
    from fp8doctor.inspect.analyze import analyze
    from fp8doctor.inspect.model import load

    limits.check_shape(batch, seq_len)
    missing = [name for name in ("torch", "transformers") if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(f"inspect builds the model with fp8doctor's own {' and '.join(missing)}, which "
                         f"{'is' if len(missing) == 1 else 'are'} not installed: {install_hint(missing)}")
    facts = load(model)
    return analyze(facts, accelerate=package_versions().get("accelerate"), gpu=gpu, batch=batch, seq_len=seq_len)


def main(args: argparse.Namespace) -> int:
    from fp8doctor.inspect.render import render

    data = inspect_model(args.model, gpu=args.gpu, batch=args.batch, seq_len=args.seq_len)
    sys.stdout.write(render(data, args.format))
    return 0
