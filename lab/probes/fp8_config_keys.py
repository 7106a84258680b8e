"""Which `fp8_config` keys of an Accelerate config file does this release read?

Per key: a config file `{distributed_type: NO, mixed_precision: fp8, fp8_config: {backend: B, KEY: VALUE}}` goes
through `accelerate launch`'s own argument handling in the child (`launch_command_parser`, `_validate_launch_command`,
`prepare_simple_launcher_cmd_env`: the environment the launched script would get), and the ACCELERATE_FP8_*
variables it exports beyond those of the same file without KEY are recorded (`exported`). Then each recipe class
is built with those variables and with the baseline's, and the fields that differ are recorded (`reaches`): a key
that reaches no field is read by no code of this release.

Where `accelerate launch` refuses the file here (<= 1.3 without Transformer Engine or MS-AMP: no FP8 library it
knows), the export is taken from the release's own `setup_fp8_env` (what launch runs on a machine with TE) and the
refusal is recorded as `launch`. TE and MS-AMP cannot be installed here, and the recipe classes check for them
before reading any variable, so the reach is observed with `is_transformer_engine_available` /
`is_msamp_available` answering True (`availability_checks: bypassed`): the reading code is the release's own.
A separate case records the fields (`dataclasses.fields`) of each recipe class.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator

import yaml
from _common import clean_environ, dataclass_fields, describe_exception, main

RECIPE_CLASSES = ("FP8RecipeKwargs", "TERecipeKwargs", "MSAMPRecipeKwargs", "AORecipeKwargs")
BACKENDS = ("TE", "MSAMP", "AO")
# Keys Accelerate's launcher knows (its --fp8_* arguments), what `accelerate config`'s questionnaire writes, and
# one typo; each with a value that differs from every release's default.
KEYS: dict[str, object] = {
    "fp8_format": "E4M3",
    "amax_history_len": 77,
    "amax_compute_algo": "max",
    "margin": 3,
    "interval": 5,
    "override_linear_precision": [True, False, True],
    "opt_level": "O1",
    "use_autocast_during_eval": True,
    "use_mxfp8_block_scaling": True,
    "pad_inner_dim": False,
    "enable_fsdp_float8_all_gather": False,
    "amax_history_length": 77,
    "amax_compute_algorithm": "max",
    "optimization_level": "O1",
    "format": "E4M3",
}


SEEN_ENV = "import json, os; print(json.dumps(dict(os.environ)))"


def spawn(env: dict) -> dict:
    """The environment a process started with `env` sees (the launcher hands its dict to subprocess as is)."""
    proc = subprocess.run([sys.executable, "-c", SEEN_ENV], env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def launch_env(config: dict, prefix: str = "ACCELERATE_FP8_") -> tuple[dict, dict | None]:
    """The variables (names starting with prefix) a script started by `accelerate launch` with this file sees, and
    the launcher's refusal if any (then the variables are those its setup_fp8_env exports, or none)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import launch as launch_utils

    with open("accelerate_fp8.yaml", "w") as fh:
        yaml.safe_dump(config, fh, sort_keys=False)
    args = launch_command_parser().parse_args(["--config_file", "accelerate_fp8.yaml", "script.py"])
    _validate_launch_command(args)
    refused = None
    try:
        _, env = launch_utils.prepare_simple_launcher_cmd_env(args)
    except RuntimeError as exc:
        refused = describe_exception(exc)
        env = launch_utils.setup_fp8_env(args, {})
    try:
        env = spawn({k: v for k, v in env.items() if not k.startswith("PYTHON")})
    except TypeError as exc:  # a non-string value: subprocess refuses the environment, the script never starts
        return {}, {**describe_exception(exc), "stage": "spawn"}
    return {k: v for k, v in sorted(env.items()) if k.startswith(prefix)}, refused


@contextlib.contextmanager
def libraries_available() -> Iterator[None]:
    import accelerate.utils.dataclasses as dc

    saved = {name: getattr(dc, name) for name in ("is_transformer_engine_available", "is_msamp_available")
             if hasattr(dc, name)}
    for name in saved:
        setattr(dc, name, lambda: True)
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(dc, name, fn)


def build(cls: type, env: dict) -> dict:
    clean_environ(env)
    try:
        with libraries_available():
            return {"fields": dataclass_fields(cls())}
    except Exception as exc:  # noqa: BLE001 - a class that refuses the values is an outcome
        return describe_exception(exc)


def reaches(env: dict, baseline: dict) -> dict:
    import accelerate.utils as au

    out: dict = {}
    for name in RECIPE_CLASSES:
        cls = getattr(au, name, None)
        if cls is None:
            continue
        with_key, without = build(cls, env), build(cls, baseline)
        if "fields" not in with_key or "fields" not in without:
            out[name] = {"with_key": with_key, "baseline": without}
            continue
        out[name] = sorted(k for k, v in with_key["fields"].items() if without["fields"].get(k) != v)
    return out


def observe_key(head: dict, backend: str, key: str, value: object, base_env: dict) -> dict:
    try:
        key_env, refused = launch_env({**head, "fp8_config": {"backend": backend, key: value}})
    except Exception as exc:  # noqa: BLE001
        return {**describe_exception(exc), "stage": "launch"}
    if refused and refused.get("stage") == "spawn":
        return {"outcome": "ok", "launch": refused, "exported": None, "reaches": None}
    exported = {k: v for k, v in key_env.items() if base_env.get(k) != v}
    result = {"outcome": "ok", "exported": exported, "reaches": reaches(key_env, base_env)}
    if refused:
        result["launch"] = refused
    return result


def run_case(case: dict) -> dict:
    import accelerate.utils as au

    if case["what"] == "recipe_fields":
        return {"outcome": "ok", "fields": {name: [f.name for f in dataclasses.fields(getattr(au, name))]
                                            for name in RECIPE_CLASSES if hasattr(au, name)}}
    head = {"distributed_type": "NO", "mixed_precision": "fp8"}
    try:
        base_env, _ = launch_env({**head, "fp8_config": {"backend": case["backend"]}})
    except Exception as exc:  # noqa: BLE001
        return {**describe_exception(exc), "stage": "launch"}
    keys = {key: observe_key(head, case["backend"], key, value, base_env) for key, value in KEYS.items()}
    return {"outcome": "ok", "availability_checks": "bypassed", "keys": keys}


def cases() -> list[dict]:
    """The recipe classes' fields, then per backend every key of KEYS (one child per backend: the baseline file is
    launched once)."""
    out: list[dict] = [{"what": "recipe_fields", "env": {}}]
    out += [{"what": "keys", "backend": backend, "values": KEYS, "env": {}} for backend in BACKENDS]
    return out


if __name__ == "__main__":
    main(cases(), run_case, ("accelerate", "accelerate.utils", "accelerate.commands.launch", "torchao.float8"))
