"""`fp8doctor repro`: run the reference report's buggy paths and the fixed paths in child processes, classify
each run, and say which fix worked on this machine.

Plan (pure, from configs + facts) -> runs (fp8doctor.runs.pool) -> verdicts (fp8doctor.runs.verdicts) ->
rendering (text/md/json). Every rendered string and the JSON go through fp8doctor.redact.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from fp8doctor.capability import accelerate_has_recipe
from fp8doctor.errors import UsageError
from fp8doctor.redact import redact_env, redact_text
from fp8doctor.runs.backends.te import UNCHECKED_ENV
from fp8doctor.runs.pool import redact_result
from fp8doctor.runs.spec import RunSpec
from fp8doctor.verdicts import FAILED, FP8_ACTIVE, NOT_APPLICABLE, REPRODUCED, SILENT_BF16

FORMATS = ("text", "md", "json")
DEFAULT_STEPS = 6
DEFAULT_TIMEOUT_S = 300.0
LF_BACKENDS = {"te": "te", "transformer_engine": "te", "torchao": "torchao", "ao": "torchao", "auto": None}
ACC_BACKENDS = {"TE": "te", "AO": "torchao", "TORCHAO": "torchao", "MSAMP": None, "NO": None}


@dataclass
class Row:
    key: str
    label: str
    kind: str  # "buggy" | "fixed" | "yours"
    spec: RunSpec
    expected: tuple[str, ...]
    result: dict[str, Any] | None = None
    verdict: str = ""
    reason: str = ""

    @property
    def as_expected(self) -> bool:
        return self.verdict in self.expected


@dataclass
class UserConfigs:
    llamafactory: dict[str, Any] | None = None
    llamafactory_path: str | None = None
    accelerate: dict[str, Any] | None = None
    accelerate_path: str | None = None


@dataclass
class Plan:
    backend: str
    recipe: str
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    te_reason: str | None = None
    configs: UserConfigs = field(default_factory=UserConfigs)
    work_dir: str | None = None


@dataclass
class ReproReport:
    plan: Plan
    caller_env: dict[str, str]
    wall_s: float = 0.0

    @property
    def rows(self) -> list[Row]:
        return self.plan.rows

    def fixed_active(self) -> list[Row]:
        return [r for r in self.rows if r.kind == "fixed" and r.verdict == FP8_ACTIVE]

    def exit_code(self) -> int:
        return 0 if self.fixed_active() else 1


# ---------------------------------------------------------------- configs


def load_user_configs(paths: Sequence[str]) -> UserConfigs:
    """Read --config files (LLaMA-Factory YAML and/or Accelerate config YAML); anything else is a UsageError."""
    try:
        from fp8doctor.configs import load_config
    except ImportError:  # pragma: no cover - configs.py ships with the package
        load_config = _minimal_load_config
    out = UserConfigs()
    for path in paths:
        cfg = load_config(path)
        kind, data = cfg["kind"], cfg["data"]
        if kind == "llamafactory":
            if out.llamafactory is not None:
                raise UsageError(f"{path}: only one LLaMA-Factory config per run (have {out.llamafactory_path})")
            _check_llamafactory(path, data)
            out.llamafactory, out.llamafactory_path = data, str(path)
        elif kind == "accelerate":
            if out.accelerate is not None:
                raise UsageError(f"{path}: only one Accelerate config per run (already have {out.accelerate_path})")
            _check_accelerate(path, data)
            out.accelerate, out.accelerate_path = data, str(path)
        else:
            raise UsageError(f"{path}: repro takes a LLaMA-Factory training YAML or an Accelerate config YAML, "
                             f"not a {cfg['label']}")
    return out


def _minimal_load_config(path: str) -> dict[str, Any]:
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: malformed YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: top level must be a mapping of settings")
    kind = "llamafactory" if {"fp8", "fp8_backend", "stage"} & set(data) else "accelerate"
    return {"path": path, "kind": kind, "label": kind, "data": data}


def _check_llamafactory(path: str, data: dict[str, Any]) -> None:
    for key in ("fp8", "bf16", "fp16"):
        if key in data and data[key] is not None and not isinstance(data[key], bool):
            raise UsageError(f"{path}: `{key}` must be true or false, found {data[key]!r}")
    backend = data.get("fp8_backend")
    if backend is not None and str(backend).lower() not in LF_BACKENDS:
        raise UsageError(f"{path}: unknown fp8_backend {backend!r}; expected one of te, torchao, auto")


def _check_accelerate(path: str, data: dict[str, Any]) -> None:
    mp = data.get("mixed_precision")
    if mp is not None and str(mp).lower() not in ("no", "fp16", "bf16", "fp8"):
        raise UsageError(f"{path}: unknown mixed_precision {mp!r}; expected no, fp16, bf16 or fp8")
    fp8 = data.get("fp8_config")
    if fp8 is not None and not isinstance(fp8, dict):
        raise UsageError(f"{path}: fp8_config must be a mapping, found {type(fp8).__name__}")
    backend = (fp8 or {}).get("backend")
    if backend is not None and str(backend).upper() not in ACC_BACKENDS:
        raise UsageError(f"{path}: unknown fp8_config.backend {backend!r}; expected TE, AO or MSAMP")


# ---------------------------------------------------------------- plan


def accelerate_version() -> str | None:
    from fp8doctor.facts.packages import version_of

    return version_of("accelerate")


def recipe_class(backend: str) -> str:
    """The recipe handler class the diagnosed Accelerate has for `backend`."""
    from fp8doctor.generations import accelerate_generation

    classes = accelerate_generation(accelerate_version()).get("recipe_classes") or []
    if "TERecipeKwargs" not in classes and "FP8RecipeKwargs" in classes:
        return "FP8RecipeKwargs"
    return "TERecipeKwargs" if backend == "te" else "AORecipeKwargs"


def transformers_major() -> int:
    from fp8doctor.facts.packages import version_of

    try:
        return int((version_of("transformers") or "0").split(".")[0])
    except ValueError:
        return 0


def _requested_backend(cli_backend: str, configs: UserConfigs) -> tuple[str | None, str]:
    if cli_backend in ("te", "torchao"):
        return cli_backend, "--backend"
    if configs.llamafactory and configs.llamafactory.get("fp8_backend"):
        b = LF_BACKENDS.get(str(configs.llamafactory["fp8_backend"]).lower())
        if b:
            return b, f"fp8_backend in {configs.llamafactory_path}"
    backend = ((configs.accelerate or {}).get("fp8_config") or {}).get("backend")
    if backend and ACC_BACKENDS.get(str(backend).upper()):
        return ACC_BACKENDS[str(backend).upper()], f"fp8_config.backend in {configs.accelerate_path}"
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
    ao_ok, ao_why = accelerate_has_recipe("torchao", accelerate_version())
    wanted, source = _requested_backend(cli_backend, configs)
    if not ao_ok and wanted != "torchao":
        # Accelerate <= 1.3: FP8 only through TE (or MS-AMP); without TE nothing can train in FP8 here, but the
        # report's ValueError is Accelerate's own check, reached with the real handler class (see plan rows).
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


def _backend_env(backend: str, recipe: str) -> dict[str, str]:
    if backend == "te":
        from fp8doctor.runs.backends.te import accelerate_env

        return accelerate_env(recipe)
    return {"ACCELERATE_FP8_BACKEND": "AO"}


def build_plan(cli_backend: str = "auto", configs: UserConfigs | None = None, steps: int = DEFAULT_STEPS,
               timeout_s: float = DEFAULT_TIMEOUT_S, skip: Callable[[RunSpec], str | None] | None = None,
               work_dir: str | None = None) -> Plan:
    if skip is None:
        from fp8doctor.runs.skip import skip_reason

        def skip(spec: RunSpec) -> str | None:
            return skip_reason(spec)

    configs = configs or UserConfigs()
    backend, recipe, notes, te_reason = choose_backend(cli_backend, configs, skip)
    base = RunSpec(backend=backend, recipe=recipe, steps=steps, timeout_s=timeout_s, size="tiny")
    if_missing_expected = (SILENT_BF16,) if transformers_major() >= 5 else (REPRODUCED, SILENT_BF16)
    # Accelerate <= 1.3 without TE: the buggy rows build the real FP8RecipeKwargs without its TE-availability check.
    buggy_env = ({UNCHECKED_ENV: "1"} if backend == "te" and te_reason
                 and not accelerate_has_recipe("torchao", accelerate_version())[0] else {})
    rows = [
        Row("buggy_append", "buggy patch, always append recipe (bf16: true)", "buggy",
            replace(base, entry="buggy_patch_append", bf16=True, env=dict(buggy_env)), (REPRODUCED,)),
        Row("buggy_if_missing", "buggy patch, inject if kwargs_handlers missing (bf16: true)", "buggy",
            replace(base, entry="buggy_patch_if_missing", bf16=True, env=dict(buggy_env)), if_missing_expected),
        Row("accelerator", "Accelerator(mixed_precision='fp8', kwargs_handlers=[recipe])", "fixed",
            replace(base, entry="accelerator"), (FP8_ACTIVE,)),
        Row("trainer", "Trainer, bf16: false + ACCELERATE_MIXED_PRECISION=fp8", "fixed",
            replace(base, entry="trainer", env={"ACCELERATE_MIXED_PRECISION": "fp8", **_backend_env(backend, recipe)}),
            (FP8_ACTIVE,)),
        Row("launch", "accelerate launch, config mixed_precision: fp8 + fp8_config", "fixed",
            replace(base, entry="launch"), (FP8_ACTIVE,)),
        Row("multiproc", "2 processes, Accelerator(mixed_precision='fp8')", "fixed",
            replace(base, entry="multiproc", nproc=2), (FP8_ACTIVE,)),
        Row("native", "native " + ("TE modules + autocast" if backend == "te" else "convert_to_float8_training"),
            "fixed", replace(base, entry="native"), (FP8_ACTIVE,)),
    ]
    rows += _user_rows(configs, base, backend, recipe, work_dir)
    for row in rows:
        # A path this machine cannot run (the same capability checks that skip it) is expected to be skipped.
        if skip(row.spec):
            row.expected = (NOT_APPLICABLE,)
    return Plan(backend=backend, recipe=recipe, rows=rows, notes=notes, te_reason=te_reason, configs=configs,
                work_dir=work_dir)


def _lf_env(configs: UserConfigs, backend: str, recipe: str) -> dict[str, str]:
    """The environment LLaMA-Factory's FP8 setup leaves: it skips its own setup when Accelerate is already
    configured (the report's log: "Accelerate already configured via config/env")."""
    acc_mp = (configs.accelerate or {}).get("mixed_precision")
    if acc_mp:
        env = {"ACCELERATE_MIXED_PRECISION": str(acc_mp).lower()}
        if str(acc_mp).lower() == "fp8":
            env.update(_backend_env(backend, recipe))
        return env
    if (configs.llamafactory or {}).get("fp8"):
        return {"ACCELERATE_MIXED_PRECISION": "fp8", **_backend_env(backend, recipe)}
    return {"ACCELERATE_MIXED_PRECISION": "no"}


def _user_rows(configs: UserConfigs, base: RunSpec, backend: str, recipe: str, work_dir: str | None) -> list[Row]:
    rows: list[Row] = []
    major = transformers_major()
    if configs.llamafactory is not None:
        lf = configs.llamafactory
        bf16 = bool(lf.get("bf16"))
        env = _lf_env(configs, backend, recipe)
        # transformers >= 5: TrainingArguments.mixed_precision = env value, overwritten to "bf16" by bf16=True.
        effective = "bf16" if bf16 else env.get("ACCELERATE_MIXED_PRECISION", "no")
        fp8 = effective == "fp8"
        # A leftover ACCELERATE_FP8_BACKEND next to a non-fp8 precision makes Accelerate 1.15's prepare()
        # convert for that backend without a recipe (AO: AttributeError in _prepare_ao): either is possible.
        not_fp8 = (SILENT_BF16, FAILED) if "ACCELERATE_FP8_BACKEND" in env else (SILENT_BF16,)
        name = os.path.basename(configs.llamafactory_path or "config")
        rows += [
            Row("yours_append", f"{name}: recipe injection, append form", "yours",
                replace(base, entry="buggy_patch_append", bf16=bf16, env=dict(env)),
                (FP8_ACTIVE,) if fp8 else (REPRODUCED,)),
            Row("yours_if_missing", f"{name}: recipe injection, if-missing form", "yours",
                replace(base, entry="buggy_patch_if_missing", bf16=bf16, env=dict(env)),
                (FP8_ACTIVE,) if fp8 else (not_fp8 if major >= 5 else (REPRODUCED, *not_fp8))),
            Row("yours_trainer", f"{name}: Trainer + env, no patch", "yours",
                replace(base, entry="trainer", bf16=bf16, env=dict(env)), (FP8_ACTIVE,) if fp8 else not_fp8),
        ]
    if configs.accelerate is not None:
        adapted, changed = adapt_accelerate_config(configs.accelerate)
        acc_backend = ACC_BACKENDS.get(str((adapted.get("fp8_config") or {}).get("backend", "")).upper())
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
        mp = str(adapted.get("mixed_precision", "no")).lower()
        acc_backend = ACC_BACKENDS.get(str((adapted.get("fp8_config") or {}).get("backend", "")).upper())
        spec_backend = acc_backend or backend
        spec_recipe = recipe if spec_backend == backend else ("tensorwise" if spec_backend == "torchao" else
                                                               "delayed_hybrid")
        label = f"{name}: accelerate launch" + (f" (adapted: {', '.join(changed)})" if changed else "")
        rows.append(Row("yours_launch", label, "yours",
                        replace(base, entry="launch", backend=spec_backend, recipe=spec_recipe, config_file=path,
                                nproc=int(adapted["num_processes"])),
                        (FP8_ACTIVE,) if mp == "fp8" else (SILENT_BF16,)))
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
    # Multi-process configs keep 2 processes; MULTI_GPU is what really fans out (see runs/entries/launch.py).
    forced = {"compute_environment": "LOCAL_MACHINE", "distributed_type": "MULTI_GPU" if multi else "NO",
              "num_machines": 1, "num_processes": 2 if multi else 1, "machine_rank": 0}
    changed = [k for k, v in forced.items() if k in data and data[k] != v]
    dropped = sorted(k for k in data if k not in keep and k not in forced and k != "use_cpu")
    adapted.update(forced)
    from fp8doctor.runs.skip import machine_facts

    cpu = not machine_facts().get("gpu_count")
    adapted["use_cpu"] = cpu
    if bool(data.get("use_cpu", False)) != cpu:
        changed.append("use_cpu")
    if dropped:
        changed.append("dropped " + "/".join(dropped))
    return adapted, changed


# ---------------------------------------------------------------- run


def caller_fp8_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's variables the runs do not inherit (recorded and shown, never silently used)."""
    from fp8doctor.runs.pool import _CONTROLLED

    environ = dict(os.environ if environ is None else environ)
    return redact_env({k: v for k, v in sorted(environ.items()) if _CONTROLLED.match(k)})


def run_repro(config_paths: Sequence[str] = (), backend: str = "auto", steps: int = DEFAULT_STEPS,
              timeout_s: float = DEFAULT_TIMEOUT_S, workers: int | None = None, progress: bool = True
              ) -> ReproReport:
    """Plan, run and classify; UsageError on bad input. The returned report renders itself (render())."""
    import time

    from fp8doctor.runs.pool import run_specs
    from fp8doctor.runs.verdicts import classify

    if backend not in ("auto", "te", "torchao"):
        raise UsageError(f"unknown backend {backend!r}; choose auto, te or torchao")
    if steps < 2:
        raise UsageError("--steps must be at least 2 (the loss has to be seen falling)")
    if timeout_s <= 0:
        raise UsageError("--timeout must be positive")
    if workers is not None and workers < 1:
        raise UsageError("--workers must be at least 1")
    configs = load_user_configs(config_paths)
    work_dir = tempfile.mkdtemp(prefix="fp8doctor-repro-")
    t0 = time.perf_counter()
    try:
        plan = build_plan(backend, configs, steps=steps, timeout_s=timeout_s, work_dir=work_dir)
        workers = workers or max(1, min(2, os.cpu_count() or 1))
        bar = _progress(len(plan.rows)) if progress else None

        def done(spec: RunSpec, result: dict[str, Any]) -> None:
            if bar is not None:
                bar.set_postfix_str(f"{spec.entry}: {result.get('outcome')}")
                bar.update(1)

        results = run_specs([r.spec for r in plan.rows], workers=workers, on_result=done)
        if bar is not None:
            bar.close()
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    for row, result in zip(plan.rows, results, strict=True):
        row.result = redact_result(result)
        v = classify(row.result)
        row.verdict, row.reason = v.name, v.reason
    return ReproReport(plan=plan, caller_env=caller_fp8_env(), wall_s=time.perf_counter() - t0)


def _progress(total: int) -> Any:
    import sys

    from tqdm import tqdm

    return tqdm(total=total, desc="fp8doctor repro", unit="run", file=sys.stderr, leave=False,
                disable=None)  # None: off when stderr is not a terminal


# ---------------------------------------------------------------- render


def _loss_text(result: dict[str, Any]) -> str:
    losses = result.get("losses") or []
    if not losses:
        return "-"

    def f(v: Any) -> str:
        return v if isinstance(v, str) else f"{v:.3f}"

    return f"{f(losses[0])} -> {f(losses[-1])}"


def _mp_text(result: dict[str, Any]) -> str:
    acc = result.get("accelerator")
    if acc:
        return str(acc.get("mixed_precision"))
    patch = result.get("patch") or {}
    if patch.get("mixed_precision_arg"):
        return f"{patch['mixed_precision_arg']} (argument)"
    if (result.get("spec") or {}).get("entry") == "native" and result.get("outcome") == "finished":
        return "n/a (no Accelerator)"
    return "-"


def _layers_text(result: dict[str, Any]) -> str:
    eligible = len(result.get("eligible_layers") or [])
    if result.get("outcome") != "finished":
        return f"-/{eligible}" if eligible else "-"
    return f"{len(result.get('fp8_layers') or [])}/{eligible}"


def table_rows(report: ReproReport) -> list[list[str]]:
    out = []
    for r in report.rows:
        res = r.result or {}
        verdict = r.verdict if r.as_expected else f"{r.verdict} (UNEXPECTED)"
        wall = res.get("wall_s")
        out.append([r.label, " or ".join(r.expected), verdict, _mp_text(res), _layers_text(res), _loss_text(res),
                    f"{wall:.1f}s" if isinstance(wall, (int, float)) else "-"])
    return out


HEADERS = ["path", "expected", "verdict", "mixed_precision", "fp8 layers", "loss first -> last", "time"]


def verdict_paragraph(report: ReproReport) -> str:
    rows = {r.key: r for r in report.rows}
    plan = report.plan
    recipe_cls = recipe_class(plan.backend)
    parts: list[str] = []
    append = rows["buggy_append"]
    if append.verdict == REPRODUCED:
        err = (append.result or {}).get("error") or {}
        parts.append(f"REPRODUCED: with `bf16: true` the Trainer builds `Accelerator(mixed_precision='bf16')`; "
                     f"injecting an FP8 recipe handler ({recipe_cls}) into it raises ValueError "
                     f"\"{err.get('message')}\" at {err.get('where')} (called from {err.get('user_where')}).")
    else:
        parts.append(f"NOT reproduced: the always-append patch gave {append.verdict} ({append.reason}).")
    missing = rows["buggy_if_missing"]
    patch = (missing.result or {}).get("patch") or {}
    if missing.verdict == SILENT_BF16:
        seen = ", ".join(patch.get("kwargs_handlers_seen") or []) or "some"
        parts.append(f"The report's own patch (inject only if `kwargs_handlers` is missing) injected "
                     f"{patch.get('injected', 0)} recipe(s): this transformers always passes kwargs_handlers "
                     f"({seen}), so the run trained silently in bf16 ({missing.reason}).")
    else:
        parts.append(f"The inject-if-missing patch gave {missing.verdict} ({missing.reason}).")
    yours = [r for r in report.rows if r.kind == "yours"]
    if yours:
        parts.append("Your config: " + "; ".join(f"{r.label} -> {r.verdict}" for r in yours) + ".")
    if any("_prepare_ao" in str(((r.result or {}).get("error") or {}).get("where")) for r in report.rows):
        parts.append("A leftover ACCELERATE_FP8_BACKEND next to a non-fp8 mixed precision sends Accelerate's "
                     "prepare() down the FP8 backend's path without a recipe (the AttributeError in _prepare_ao): "
                     "set mixed precision to fp8, or unset ACCELERATE_FP8_BACKEND when training in bf16.")
    active = report.fixed_active()
    if active:
        names = ", ".join(r.key for r in active)
        parts.append(f"Fixed paths with FP8 really active here: {names}.")
    else:
        parts.append("No fixed path reached fp8-active on this machine: see the reasons below.")
    parts.extend(plan.notes)
    return " ".join(parts)


def fix_lines(report: ReproReport) -> list[str]:
    """Concrete settings of the fixed paths that reached fp8-active here."""
    plan = report.plan
    active = {r.key: r for r in report.fixed_active()}
    env = " ".join(f"{k}={v}" for k, v in _backend_env(plan.backend, plan.recipe).items())
    handler = {"TERecipeKwargs": "TERecipeKwargs(fp8_format='HYBRID')", "AORecipeKwargs": "AORecipeKwargs()",
               "FP8RecipeKwargs": "FP8RecipeKwargs(backend='TE', fp8_format='HYBRID')"}[recipe_class(plan.backend)]
    lines: list[str] = []
    if "trainer" in active:
        lines += ["# HF Trainer / LLaMA-Factory: let Accelerate own FP8, do not patch Accelerator.__init__",
                  f"export ACCELERATE_MIXED_PRECISION=fp8 {env}",
                  "# and in the training config: bf16: false  (bf16: true overrides fp8 in TrainingArguments)"]
    if "launch" in active:
        cfg = "repro_configs/accelerate_fp8_te.yaml" if plan.backend == "te" else "repro_configs/accelerate_fp8_ao.yaml"
        backend = "TE" if plan.backend == "te" else "AO"
        lines += ["# accelerate launch with an FP8 Accelerate config (mixed_precision: fp8 + fp8_config)",
                  f"accelerate launch --config_file {cfg} train.py",
                  f"#   {cfg}: mixed_precision: fp8, fp8_config: {{backend: {backend}}}"]
    if "accelerator" in active:
        lines += ["# your own Accelerator", f"Accelerator(mixed_precision='fp8', kwargs_handlers=[{handler}])"]
    if active and plan.backend == "torchao" and any((r.result or {}).get("emulated") for r in active.values()):
        lines.append("# (on this CPU the runs used torchao emulate=True; on an FP8 GPU the same settings run "
                     "real FP8 matmuls)")
    return lines


def to_json_obj(report: ReproReport) -> dict[str, Any]:
    return redact_result({
        "backend": report.plan.backend,
        "recipe": report.plan.recipe,
        "exit_code": report.exit_code(),
        "verdict": verdict_paragraph(report),
        "fix": fix_lines(report),
        "notes": report.plan.notes,
        "caller_env": {"removed_from_caller": report.caller_env},
        "configs": {"llamafactory": report.plan.configs.llamafactory_path,
                    "accelerate": report.plan.configs.accelerate_path},
        "wall_s": round(report.wall_s, 2),
        "rows": [{"id": r.key, "label": r.label, "kind": r.kind, "expected": list(r.expected),
                  "verdict": r.verdict, "as_expected": r.as_expected, "reason": r.reason, "result": r.result}
                 for r in report.rows],
    })


def render(report: ReproReport, fmt: str = "text") -> str:
    from tabulate import tabulate

    if fmt == "json":
        return json.dumps(to_json_obj(report), indent=2, default=str) + "\n"
    md = fmt == "md"
    table = tabulate(table_rows(report), headers=HEADERS, tablefmt="github" if md else "simple")
    out: list[str] = []
    title = f"fp8doctor repro ({report.plan.backend}:{report.plan.recipe}, tiny Llama, {report.wall_s:.0f}s)"
    out.append(f"## {title}" if md else title)
    out += ["", table, ""]
    reasons = [f"- {r.key}: {r.reason}" for r in report.rows]
    paragraph = "Verdict: " + verdict_paragraph(report)
    out += [paragraph if md else textwrap.fill(paragraph, 118, break_on_hyphens=False), "", "Per run:", *reasons, ""]
    if report.caller_env:
        env = ", ".join(f"{k}={v}" for k, v in report.caller_env.items())
        out += [f"Your shell's FP8-relevant variables were recorded and NOT passed to the runs: {env}", ""]
    lines = fix_lines(report)
    if lines:
        out.append("The fix that worked here:")
        out += ["```bash", *lines, "```"] if md else [f"    {ln}" for ln in lines]
        out.append("")
    out.append(f"exit {report.exit_code()}: " + ("diagnosis complete" if report.exit_code() == 0 else
                                                  "no fixed path reached fp8-active"))
    return redact_text("\n".join(out) + "\n")
