"""Entry paths: one module per real way users switch FP8 on. Each module declares NAMES (the RunSpec.entry
values it serves), LAUNCHES_PROCESSES (True when it starts a real launcher whose ranks import the libraries, so
the worker need not) and `run(ctx)`.

native, accelerator, trainer run inside the worker process; accelerate_launch (`launch`) and multi_process
(`multiproc`) start a real launcher (`accelerate launch`, torchrun) on rank_script.py through launcher.py, which
merges the per-rank results (a rank script's first act is `fp8doctor.runs.handoff.continue_warm_or_here()`, which
lets a warm worker's launcher start its ranks warm; a new launcher entry gets that by using launcher.launch and a
rank script that makes the same call); sharded (`fsdp2`, `deepspeed`) starts the same ranks with an Accelerate
plugin (plugins.py); patched_accelerator reproduces the reference report's monkey-patch of
`Accelerator.__init__` in its two forms. common.py holds the run context and the one training loop.
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType

ENTRY_MODULES = ("native", "accelerator", "trainer", "accelerate_launch", "multi_process", "sharded",
                 "patched_accelerator")


@functools.lru_cache(maxsize=1)
def registry() -> dict[str, str]:
    """RunSpec.entry name -> the module serving it, from each module's own NAMES."""
    out: dict[str, str] = {}
    for module in ENTRY_MODULES:
        for name in importlib.import_module(f"{__name__}.{module}").NAMES:
            out[name] = module
    return out


def entry_module(name: str) -> ModuleType:
    """The module that runs entry `name` (KeyError for an unknown entry: RunSpec.validate refuses it first)."""
    return importlib.import_module(f"{__name__}.{registry()[name]}")
