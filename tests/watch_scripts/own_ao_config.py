"""A plain Accelerate loop on the tiny Llama, no FSDP, with an AO recipe handler: its own torchao config with float8
all-gather on (meant for FSDP2) or off, or `AORecipeKwargs()` (Accelerate builds the config):
`python own_ao_config.py true|false|none`."""

from __future__ import annotations

import sys

from accelerate import Accelerator
from accelerate.utils import AORecipeKwargs
from tiny import build_model, train
from torchao.float8 import Float8LinearConfig


def main() -> None:
    handler = (AORecipeKwargs() if sys.argv[1] == "none"
               else AORecipeKwargs(config=Float8LinearConfig(enable_fsdp_float8_all_gather=sys.argv[1] == "true")))
    accelerator = Accelerator(mixed_precision="fp8", kwargs_handlers=[handler])
    train(accelerator, build_model(seed=0), steps=3, rank_in_line=False)


if __name__ == "__main__":
    main()
