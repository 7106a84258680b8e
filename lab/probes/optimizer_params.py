"""Do the FP8 layers' weights stay the parameters the optimizer holds? `Accelerator(...).prepare(model, optimizer)`
with the torchao backend, the optimizer built before prepare (as every script and the Trainer do).

Per setup: the trainable parameters, the FP8 layers, the FP8 layers' weights the optimizer does not hold (by
identity, after prepare), how many of those and of the held ones change in 2 SGD steps, and the torchao config the
release hands to the conversion (`ao_recipe_handler.config` after init, and the converted layers' own config) as
`enable_fsdp_float8_all_gather` / `pad_inner_dim`.

Setups: no handler with the backend from `ACCELERATE_FP8_BACKEND=AO` (what the Trainer with environment variables
gives), and the same with ACCELERATE_FP8_ENABLE_FSDP_FLOAT8_ALL_GATHER=false; the variables `accelerate launch`
exports for a config file `fp8_config: {backend: AO}` and for the same with `enable_fsdp_float8_all_gather: false`
(taken as fp8_config_keys takes them, then `Accelerator()`); `AORecipeKwargs()`; and
`AORecipeKwargs(config=Float8LinearConfig())` (torchao's own defaults). CPU: `torch._scaled_mm` runs here, so no
`emulate`.
"""

from __future__ import annotations

import torch
from _common import clean_environ, describe_exception, fp8_layers, main, prepare_tiny, state_facts

CONFIG_FIELDS = ("enable_fsdp_float8_all_gather", "pad_inner_dim")
HEAD = {"distributed_type": "NO", "mixed_precision": "fp8"}
CASES: list[dict] = [
    {"setup": "env", "env": {"ACCELERATE_MIXED_PRECISION": "fp8", "ACCELERATE_FP8_BACKEND": "AO"}},
    {"setup": "env", "env": {"ACCELERATE_MIXED_PRECISION": "fp8", "ACCELERATE_FP8_BACKEND": "AO",
                             "ACCELERATE_FP8_ENABLE_FSDP_FLOAT8_ALL_GATHER": "false"}},
    {"setup": "launch", "fp8_config": {"backend": "AO"}, "env": {}},
    {"setup": "launch", "fp8_config": {"backend": "AO", "enable_fsdp_float8_all_gather": False}, "env": {}},
    {"setup": "AORecipeKwargs()", "env": {}},
    {"setup": "AORecipeKwargs(config=Float8LinearConfig())", "env": {}},
]


def config_facts(config: object) -> dict | None:
    if config is None:
        return None
    return {name: getattr(config, name, "<absent>") for name in CONFIG_FIELDS}


def accelerator_for(case: dict):
    from accelerate import Accelerator

    setup = case["setup"]
    if setup == "env":
        return Accelerator()
    if setup == "launch":
        clean_environ(case["launched_env"])
        return Accelerator()
    import accelerate.utils as au

    if not hasattr(au, "AORecipeKwargs"):
        return None
    if setup == "AORecipeKwargs()":
        handler = au.AORecipeKwargs()
    else:
        from torchao.float8 import Float8LinearConfig

        handler = au.AORecipeKwargs(config=Float8LinearConfig())
    return Accelerator(mixed_precision="fp8", kwargs_handlers=[handler])


def launched(case: dict) -> dict | None:
    """The ACCELERATE_* variables the launched script would see (into case['launched_env']), or the launcher's
    refusal as the outcome (stage `launch`: the script never starts)."""
    from fp8_config_keys import launch_env

    try:
        env, refused = launch_env({**HEAD, "fp8_config": case["fp8_config"]}, prefix="ACCELERATE_")
    except Exception as exc:  # noqa: BLE001
        return {**describe_exception(exc), "stage": "launch"}
    if refused:
        return {**refused, "stage": "launch"}
    case["launched_env"] = env
    return None


def observe(case: dict) -> dict:
    if case["setup"] == "launch":
        refused = launched(case)
        if refused:
            return refused
    try:
        accelerator = accelerator_for(case)
    except Exception as exc:  # noqa: BLE001 - a release that refuses the setup is the observation
        return {**describe_exception(exc), "stage": "init"}
    if accelerator is None:
        return {"outcome": "absent", "stage": "handler"}
    return trained(accelerator)


def trained(accelerator) -> dict:
    """prepare(model, optimizer) of the tiny model with this Accelerator, then 2 SGD steps: the FP8 weights the
    optimizer does not hold and what changed."""
    handler = getattr(accelerator, "ao_recipe_handler", None)
    facts: dict = {**state_facts(accelerator), "handler_config": config_facts(getattr(handler, "config", None))}
    model, optimizer, refused = prepare_tiny(accelerator, facts)
    if refused:
        return refused
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    fp8_weights = {f"{name}.weight": module.weight for name, module in model.named_modules()
                   if type(module).__name__.startswith("Float8")}
    outside = sorted(name for name, p in fp8_weights.items() if id(p) not in held)
    layer_configs: list[dict | None] = []
    for module in model.modules():
        got = config_facts(getattr(module, "config", None)) if type(module).__name__.startswith("Float8") else None
        if got is not None and got not in layer_configs:
            layer_configs.append(got)
    params = dict(model.named_parameters())
    before = {name: p.detach().clone() for name, p in params.items()}
    x = torch.randn(8, 32, generator=torch.Generator().manual_seed(0))
    for _ in range(2):
        accelerator.backward(model(x).pow(2).mean())
        optimizer.step()
        optimizer.zero_grad()
    changed = {name for name, p in params.items() if not torch.equal(before[name], p.detach())}
    return {"outcome": "ok", **facts, "fp8_layers": fp8_layers(model),
            "layer_configs": layer_configs,
            "trainable_params": sum(1 for p in params.values() if p.requires_grad),
            "held_by_optimizer": len(held), "fp8_weights_outside_optimizer": outside,
            "outside_changed": sorted(set(outside) & changed),
            "held_changed": sum(1 for name in changed if name not in outside)}


if __name__ == "__main__":
    main(CASES, observe, ("accelerate", "accelerate.utils", "accelerate.commands.launch", "torchao.float8"))
