"""The repro plan: the user's configs read and checked (fp8doctor.configs), the backend chosen, and one row per
path to run (a RunSpec and the verdicts it is expected to reach). Pure but for reading the config files."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from fp8doctor.configs import check_runnable, load_config
from fp8doctor.facts.packages import version_of
from fp8doctor.knowledge.capability import accelerate_has_recipe
from fp8doctor.knowledge.engine import Stack
from fp8doctor.knowledge.fixes import keep_in_optimizer_env
from fp8doctor.knowledge.intent import ACCELERATE_BACKENDS, read_intent
from fp8doctor.repro.expect import diagnosed_stack, expected, launch_config_of
from fp8doctor.runs.backends import backend_env
from fp8doctor.runs.backends.te import UNCHECKED_ENV
from fp8doctor.runs.spec import RunSpec
from fp8doctor.system.errors import UsageError
from fp8doctor.verdicts import NOT_APPLICABLE

DEFAULT_STEPS = 6
DEFAULT_TIMEOUT_S = 300.0


@dataclass
class Row:
    key: str
    label: str
    kind: str  # "buggy" | "fixed" | "yours"
    spec: RunSpec
    expected: tuple[str, ...] = ()  # the engine's prediction, set by build_plan
    launch_yaml: dict[str, Any] | None = None  # the Accelerate config a launch row starts with
    result: dict[str, Any] | None = None
    verdict: str = ""
    reason: str = ""

    @property
    def as_expected(self) -> bool:
        """The verdict is one the engine predicted (a row the engine makes no claim about is never unexpected)."""
        return not self.expected or self.verdict in self.expected


@dataclass
class UserConfigs:
    llamafactory: dict[str, Any] | None = None
    llamafactory_path: str | None = None
    accelerate: dict[str, Any] | None = None
    accelerate_path: str | None = None

    def as_facts(self) -> list[dict[str, Any]]:
        """The configs as env's facts list them (kind, path, data), for the one intent reader."""
        return [{"kind": kind, "path": path or kind, "data": data} for kind, path, data in
                (("llamafactory", self.llamafactory_path, self.llamafactory),
                 ("accelerate", self.accelerate_path, self.accelerate)) if data is not None]


RUN_BACKEND = {"TE": "te", "AO": "torchao"}  # the doctor's backend names -> RunSpec.backend


@dataclass
class Plan:
    backend: str
    recipe: str
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    te_reason: str | None = None
    configs: UserConfigs = field(default_factory=UserConfigs)
    work_dir: str | None = None


def load_user_configs(paths: Sequence[str]) -> UserConfigs:
    """Read --config files (LLaMA-Factory YAML and/or Accelerate config YAML); anything else is a UsageError."""
    out = UserConfigs()
    for path in paths:
        cfg = load_config(path)
        kind, data = cfg["kind"], cfg["data"]
        if kind == "llamafactory":
            if out.llamafactory is not None:
                raise UsageError(f"{path}: only one LLaMA-Factory config per run (have {out.llamafactory_path})")
            check_runnable(kind, data, str(path))
            out.llamafactory, out.llamafactory_path = data, str(path)
        elif kind == "accelerate":
            if out.accelerate is not None:
                raise UsageError(f"{path}: only one Accelerate config per run (already have {out.accelerate_path})")
            check_runnable(kind, data, str(path))
            out.accelerate, out.accelerate_path = data, str(path)
        else:
            raise UsageError(f"{path}: repro takes a LLaMA-Factory training YAML or an Accelerate config YAML, "
                             f"not a {cfg['label']}")
    return out


def recipe_class(backend: str) -> str:
    """The recipe handler class the diagnosed Accelerate has for `backend`."""
    from fp8doctor.knowledge.generations import accelerate_generation

    classes = accelerate_generation(version_of("accelerate")).get("recipe_classes") or []
    if "TERecipeKwargs" not in classes and "FP8RecipeKwargs" in classes:
        return "FP8RecipeKwargs"
    return "TERecipeKwargs" if backend == "te" else "AORecipeKwargs"


def _run_backend(accelerate_config: dict[str, Any]) -> str | None:
    """The run backend (te / torchao) an Accelerate config's fp8_config names, None for none (or MS-AMP)."""
    named = ACCELERATE_BACKENDS.get(str((accelerate_config.get("fp8_config") or {}).get("backend", "")).upper())
    return RUN_BACKEND.get(named or "")


def _requested_backend(cli_backend: str, configs: UserConfigs) -> tuple[str | None, str]:
    if cli_backend in ("te", "torchao"):
        return cli_backend, "--backend"
    for name, where in read_intent({"configs": configs.as_facts()}).backends.items():
        if name in RUN_BACKEND:
            return RUN_BACKEND[name], where
    return None, "auto"


def choose_backend(cli_backend: str, configs: UserConfigs, skip: Callable[[RunSpec], str | None]
                   ) -> tuple[str, str, list[str], str | None]:
    """(backend, recipe, notes, TE's not-applicable reason or None)."""
    notes: list[str] = []
    te_recipe = "delayed_hybrid"
    acc_fp8 = (configs.accelerate or {}).get("fp8_config") or {}
    if str(acc_fp8.get("fp8_format", "")).upper() == "E4M3":
        te_recipe = "delayed_e4m3"
    te_reason = skip(RunSpec(backend="te", recipe=te_recipe, entry="accelerator"))
    ao_ok, ao_why = accelerate_has_recipe("torchao", version_of("accelerate"))
    wanted, source = _requested_backend(cli_backend, configs)
    if not ao_ok and wanted != "torchao":
        # Accelerate <= 1.3: FP8 only through TE (or MS-AMP); without TE nothing can train in FP8 here, but the
        # report's ValueError is Accelerate's own check, reached with the real handler class (see build_plan).
        wanted = "te"
        if te_reason:
            notes.append(f"{ao_why} Transformer Engine cannot run here ({te_reason}), so no FP8 recipe can be "
                         "built on this machine: the buggy paths build the real FP8RecipeKwargs(backend='TE') with "
                         "Accelerate's TE-availability check bypassed, to reach Accelerate's own mixed-precision "
                         "check (it fires before TE is used); the fixed paths are not-applicable.")
    elif not ao_ok:
        notes.append(f"{ao_why} Every torchao path is not-applicable with this accelerate.")
    if wanted == "te" and te_reason and cli_backend != "te" and ao_ok:
        notes.append(f"Transformer Engine was asked for ({source}) but cannot run here: {te_reason} "
                     "The runs use torchao's recipe instead: Accelerate's mixed-precision check is "
                     "backend-independent (it fires for any FP8 recipe handler), so the failure and the fix are "
                     "the same.")
        wanted = "torchao"
    if wanted is None:
        wanted = "te" if te_reason is None else "torchao"
    if wanted == "torchao" and not notes:
        why = f"Transformer Engine is not usable here ({te_reason})" if te_reason else "torchao was chosen"
        notes.append(f"{why}; the runs use torchao's recipe. Accelerate's mixed-precision check is "
                     "backend-independent (it fires for any FP8 recipe handler), so a TE setup fails and is fixed "
                     "the same way.")
    recipe = te_recipe if wanted == "te" else "tensorwise"
    return wanted, recipe, notes, te_reason


def expectation(spec: RunSpec, stack: Stack, skip: Callable[[RunSpec], str | None],
                launch_yaml: dict[str, Any] | None = None) -> tuple[str, ...]:
    """What a row is expected to end in: not-applicable where the machine cannot run it (the same capability checks
    that skip it), else the engine's prediction for the releases in `stack`."""
    if skip(spec):
        return (NOT_APPLICABLE,)
    launch = launch_yaml or (launch_config_of(spec) if spec.entry == "launch" else None)
    return expected(spec, stack, launch)


def build_plan(cli_backend: str = "auto", configs: UserConfigs | None = None, steps: int = DEFAULT_STEPS,
               timeout_s: float = DEFAULT_TIMEOUT_S, skip: Callable[[RunSpec], str | None] | None = None,
               work_dir: str | None = None) -> Plan:
    choose = skip
    if skip is None:
        from fp8doctor.runs.machine import skip_reason, snapshot

        def skip(spec: RunSpec) -> str | None:
            return skip_reason(spec)

        def choose(spec: RunSpec) -> str | None:  # the backend's own reasons, not the environment's imports
            return skip_reason(spec, snapshot())

    configs = configs or UserConfigs()
    backend, recipe, notes, te_reason = choose_backend(cli_backend, configs, choose)
    base = RunSpec(backend=backend, recipe=recipe, steps=steps, timeout_s=timeout_s, size="tiny")
    # Accelerate <= 1.3 without TE: the buggy rows build the real FP8RecipeKwargs without its TE-availability check.
    buggy_env = ({UNCHECKED_ENV: "1"} if backend == "te" and te_reason
                 and not accelerate_has_recipe("torchao", version_of("accelerate"))[0] else {})
    # The fixed rows run as the printed fixes: with Accelerate's own torchao config, the variable that keeps the FP8
    # weights in the optimizer where the release needs it (knowledge/optimizer_params).
    kept = keep_in_optimizer_env("AO" if backend == "torchao" else "TE", version_of("accelerate"))
    rows = [
        Row("buggy_append", "buggy patch, always append recipe (bf16: true)", "buggy",
            replace(base, entry="buggy_patch_append", bf16=True, env=dict(buggy_env))),
        Row("buggy_if_missing", "buggy patch, inject if kwargs_handlers missing (bf16: true)", "buggy",
            replace(base, entry="buggy_patch_if_missing", bf16=True, env=dict(buggy_env))),
        Row("accelerator", "Accelerator(mixed_precision='fp8', kwargs_handlers=[recipe])", "fixed",
            replace(base, entry="accelerator")),
        Row("trainer", "Trainer, bf16: false + ACCELERATE_MIXED_PRECISION=fp8", "fixed",
            replace(base, entry="trainer",
                    env={"ACCELERATE_MIXED_PRECISION": "fp8", **backend_env(backend, recipe), **kept})),
        Row("launch", "accelerate launch, config mixed_precision: fp8 + fp8_config", "fixed",
            replace(base, entry="launch", env=dict(kept))),
        Row("multiproc", "2 processes, Accelerator(mixed_precision='fp8')", "fixed",
            replace(base, entry="multiproc", nproc=2)),
        Row("native", "native " + ("TE modules + autocast" if backend == "te" else "convert_to_float8_training"),
            "fixed", replace(base, entry="native")),
    ]
    rows += _user_rows(configs, base, backend, recipe, work_dir)
    stack = diagnosed_stack()
    for row in rows:
        row.expected = expectation(row.spec, stack, skip, row.launch_yaml)
    return Plan(backend=backend, recipe=recipe, rows=rows, notes=notes, te_reason=te_reason, configs=configs,
                work_dir=work_dir)


def _lf_env(configs: UserConfigs, backend: str, recipe: str) -> dict[str, str]:
    """The environment LLaMA-Factory's FP8 setup leaves: it skips its own setup when Accelerate is already
    configured (the report's log: "Accelerate already configured via config/env")."""
    acc_mp = (configs.accelerate or {}).get("mixed_precision")
    if acc_mp:
        env = {"ACCELERATE_MIXED_PRECISION": str(acc_mp).lower()}
        if str(acc_mp).lower() == "fp8":
            env.update(backend_env(backend, recipe))
        return env
    if (configs.llamafactory or {}).get("fp8"):
        return {"ACCELERATE_MIXED_PRECISION": "fp8", **backend_env(backend, recipe)}
    return {"ACCELERATE_MIXED_PRECISION": "no"}


def _user_rows(configs: UserConfigs, base: RunSpec, backend: str, recipe: str, work_dir: str | None) -> list[Row]:
    rows: list[Row] = []
    if configs.llamafactory is not None:
        lf = configs.llamafactory
        bf16 = bool(lf.get("bf16"))
        env = _lf_env(configs, backend, recipe)
        name = os.path.basename(configs.llamafactory_path or "config")
        rows += [
            Row("yours_append", f"{name}: recipe injection, append form", "yours",
                replace(base, entry="buggy_patch_append", bf16=bf16, env=dict(env))),
            Row("yours_if_missing", f"{name}: recipe injection, if-missing form", "yours",
                replace(base, entry="buggy_patch_if_missing", bf16=bf16, env=dict(env))),
            Row("yours_trainer", f"{name}: Trainer + env, no patch", "yours",
                replace(base, entry="trainer", bf16=bf16, env=dict(env))),
        ]
    if configs.accelerate is not None:
        adapted, changed = adapt_accelerate_config(configs.accelerate)
        acc_backend = _run_backend(adapted)
        if acc_backend == "te" and backend == "torchao":
            adapted["fp8_config"] = {"backend": "AO"}
            changed.append("fp8_config.backend TE->AO (Transformer Engine not usable here)")
        path = None
        if work_dir:
            import yaml

            path = os.path.join(work_dir, "accelerate_config.yaml")
            with open(path, "w", encoding="utf-8") as fh:
                yaml.safe_dump(adapted, fh, sort_keys=False)
        name = os.path.basename(configs.accelerate_path or "accelerate config")
        acc_backend = _run_backend(adapted)
        spec_backend = acc_backend or backend
        spec_recipe = recipe if spec_backend == backend else ("tensorwise" if spec_backend == "torchao" else
                                                               "delayed_hybrid")
        label = f"{name}: accelerate launch" + (f" (adapted: {', '.join(changed)})" if changed else "")
        rows.append(Row("yours_launch", label, "yours",
                        replace(base, entry="launch", backend=spec_backend, recipe=spec_recipe, config_file=path,
                                nproc=int(adapted["num_processes"])), launch_yaml=adapted))
    return rows


def adapt_accelerate_config(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The user's Accelerate config made runnable as one process on this machine; FP8 settings kept as they are."""
    keep = {"mixed_precision", "fp8_config", "downcast_bf16", "debug"}
    adapted: dict[str, Any] = {k: v for k, v in data.items() if k in keep}
    try:
        nproc = int(data.get("num_processes") or 1)
    except (TypeError, ValueError):
        nproc = 1
    multi = nproc > 1 and str(data.get("distributed_type", "")).upper() in ("MULTI_GPU", "MULTI_CPU")
    # Multi-process configs keep 2 processes; MULTI_GPU is what really fans out (see runs/entries/accelerate_launch.py).
    forced = {"compute_environment": "LOCAL_MACHINE", "distributed_type": "MULTI_GPU" if multi else "NO",
              "num_machines": 1, "num_processes": 2 if multi else 1, "machine_rank": 0}
    changed = [k for k, v in forced.items() if k in data and data[k] != v]
    dropped = sorted(k for k in data if k not in keep and k not in forced and k != "use_cpu")
    adapted.update(forced)
    from fp8doctor.runs.machine import snapshot

    cpu = not snapshot().get("gpu_count")
    adapted["use_cpu"] = cpu
    if bool(data.get("use_cpu", False)) != cpu:
        changed.append("use_cpu")
    if dropped:
        changed.append("dropped " + "/".join(dropped))
    return adapted, changed


