"""The script that launch_config starts (with `accelerate launch` or plain python): it reports what it sees.

Prints one line `LAB-RESULT {json}`: the ACCELERATE_* variables, then Accelerator()'s state, FP8 backend and the
FP8 layers after prepare, or the exception raised.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import accelerate_env, describe_exception, fp8_layers, state_facts, tiny_model  # noqa: E402


def main() -> None:
    import torch

    result: dict = {"accelerate_env": accelerate_env()}
    try:
        from accelerate import Accelerator

        accelerator = Accelerator()
        result.update(state_facts(accelerator))
        model = tiny_model()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        model, optimizer = accelerator.prepare(model, optimizer)
        result.update(outcome="ok", fp8_layers=fp8_layers(model))
    except Exception as exc:  # noqa: BLE001 - the failure is the observation
        result.update(describe_exception(exc))
    print("LAB-RESULT " + json.dumps(result, default=str), flush=True)


if __name__ == "__main__":
    main()
