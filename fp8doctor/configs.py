"""Read a user's config file safely and tell what kind it is (by content, not by name).

Kinds: LLaMA-Factory training YAML, axolotl config YAML (`axolotl train cfg.yaml`), TRL training YAML
(`trl sft|dpo|grpo --config`), Accelerate config YAML,
DeepSpeed JSON, HF TrainingArguments JSON.
Every bad file becomes a UsageError with one line; YAML is read with `safe_load` only.
"""

from __future__ import annotations

import json
import os
from collections import deque
from pathlib import Path
from typing import Any

import yaml

from fp8doctor.knowledge.intent import ACCELERATE_BACKENDS, LLAMAFACTORY_BACKENDS
from fp8doctor.knowledge.predict import MIXED_PRECISIONS
from fp8doctor.system.errors import UsageError
from fp8doctor.system.safeio import read_capped

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_NODES = 100_000
MAX_EXPANDED = 4 * MAX_BYTES  # characters of text once aliases are expanded

KINDS = ("llamafactory", "axolotl", "trl", "accelerate", "deepspeed", "training_args")
KIND_LABEL = {
    "llamafactory": "LLaMA-Factory training config",
    "axolotl": "axolotl config",
    "trl": "TRL training config",
    "accelerate": "Accelerate config",
    "deepspeed": "DeepSpeed config",
    "training_args": "HF TrainingArguments config",
}

# Keys that only one kind of config has (shared keys such as bf16 or gradient_accumulation_steps decide nothing).
_LLAMAFACTORY_KEYS = {"stage", "finetuning_type", "template", "fp8_backend", "quantization_bit"}
# Keys of axolotl's config schema that no other kind here has (an axolotl config may also carry TRL-like keys).
_AXOLOTL_KEYS = {"base_model", "micro_batch_size", "sequence_len", "sample_packing", "num_epochs", "val_set_size",
                 "base_model_config", "lora_target_linear", "pad_to_sequence_len", "fp8_enable_fsdp_float8_all_gather"}
# Keys of TRL's ScriptArguments, ModelConfig and SFT/DPO/GRPO configs that TrainingArguments and LLaMA-Factory lack.
_TRL_KEYS = {"dataset_name", "dataset_text_field", "dataset_train_split", "dataset_config", "packing",
             "completion_only_loss", "assistant_only_loss", "num_generations", "max_completion_length",
             "reward_funcs", "use_peft", "lora_r", "lora_target_modules", "model_name_or_path"}
_ACCELERATE_KEYS = {"compute_environment", "distributed_type", "fp8_config", "num_processes", "machine_rank",
                    "num_machines", "main_training_function", "downcast_bf16"}
_DEEPSPEED_KEYS = {"zero_optimization", "train_micro_batch_size_per_gpu", "train_batch_size",
                   "zero_allow_untested_optimizer", "wall_clock_breakdown"}
_TRAINING_ARGS_KEYS = {"output_dir", "per_device_train_batch_size", "learning_rate", "num_train_epochs",
                       "max_steps", "logging_steps", "save_strategy", "gradient_checkpointing", "bf16", "fp16"}


def _check_shape(obj: Any, path: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH and alias-expanded graphs bigger than MAX_NODES values or
    MAX_EXPANDED characters of text (keys and strings; many aliases of one long string count each time)."""
    stack: list[tuple[Any, int]] = [(obj, 0)]
    nodes = chars = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise UsageError(f"{path}: config is too large once expanded (over {MAX_NODES} values); refusing it")
        if depth > MAX_DEPTH:
            raise UsageError(f"{path}: config is nested deeper than {MAX_DEPTH} levels; refusing it")
        if isinstance(node, str):
            chars += len(node)
        elif isinstance(node, dict):
            chars += sum(len(k) for k in node if isinstance(k, str))
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
        if chars > MAX_EXPANDED:
            raise UsageError(f"{path}: config is too large once expanded (over {MAX_EXPANDED} characters of text, "
                             "aliases counted each time they are used); refusing it")


def _jsonable(obj: Any) -> Any:
    """YAML can yield dates, sets, non-string keys: turn them into JSON types so facts stay serialisable."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [_jsonable(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


def read_mapping(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse a YAML or JSON file into a dict, or raise UsageError with one clear line."""
    p = Path(path)
    shown = str(path)
    raw = read_capped(p, MAX_BYTES, "a config")
    if b"\x00" in raw:
        raise UsageError(f"{shown}: looks like a binary file, not a YAML or JSON config")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"{shown}: is not UTF-8 text (binary file?), not a YAML or JSON config") from None
    if not text.strip():
        raise UsageError(f"{shown}: file is empty")
    data = _parse(text, shown, json_first=p.suffix.lower() == ".json")
    if data is None:
        raise UsageError(f"{shown}: file holds no settings (only comments or an empty document)")
    if not isinstance(data, dict):
        kind = {"int": "an integer", "float": "a number", "str": "a string", "list": "a list", "bool": "a boolean"}.get(
            type(data).__name__, type(data).__name__)
        raise UsageError(f"{shown}: top level must be a mapping of settings, found {kind}")
    _check_shape(data, shown)
    return _jsonable(data)


def _parse(text: str, shown: str, json_first: bool) -> Any:
    try:
        if json_first:
            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                where = f"line {exc.lineno} column {exc.colno}"
                raise UsageError(f"{shown}: malformed JSON at {where}: {exc.msg}") from None
        return yaml.safe_load(text)
    except RecursionError:
        raise UsageError(f"{shown}: config is nested too deeply to parse; refusing it") from None
    except yaml.constructor.ConstructorError as exc:
        tag = getattr(exc, "problem", "") or "an unsupported tag"
        msg = f"{shown}: refused unsafe or unknown YAML tag ({tag.strip()}); only plain YAML is read"
        raise UsageError(msg) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UsageError(f"{shown}: malformed YAML{where}: {problem}") from None


def detect_kind(data: dict[str, Any]) -> str | None:
    """The config kind by its keys, or None when nothing matches."""
    keys = set(data)
    if keys & _LLAMAFACTORY_KEYS:
        return "llamafactory"
    if keys & _AXOLOTL_KEYS:
        return "axolotl"
    if keys & _TRL_KEYS:
        return "trl"
    if keys & _DEEPSPEED_KEYS or isinstance(data.get("fp16"), dict) or isinstance(data.get("bf16"), dict):
        return "deepspeed"
    if keys & _ACCELERATE_KEYS or ("mixed_precision" in keys and not keys & _TRAINING_ARGS_KEYS):
        return "accelerate"
    if keys & _TRAINING_ARGS_KEYS:
        return "training_args"
    return None


def load_config(path: str | os.PathLike[str], expect: str | None = None) -> dict[str, Any]:
    """Read one config: {"path", "kind", "label", "data"}. `expect` forces/validates the kind."""
    data = read_mapping(path)
    kind = detect_kind(data)
    if expect is not None:
        if kind not in (expect, None) and not (expect == "accelerate" and "mixed_precision" in data):
            raise UsageError(f"{path}: expected an {KIND_LABEL[expect]}, but this looks like a {KIND_LABEL[kind]}")
        kind = expect
    if kind is None:
        keys = ", ".join(sorted(data)[:6])
        raise UsageError(
            f"{path}: cannot tell what kind of config this is (keys: {keys}); expected a LLaMA-Factory YAML, "
            "an axolotl config, a TRL config, an Accelerate config, a DeepSpeed JSON or a TrainingArguments JSON"
        )
    check_types(kind, data, str(path))
    if kind == "accelerate":
        check_accelerate_keys(data, str(path))
    return {"path": str(path), "kind": kind, "label": KIND_LABEL[kind], "data": data,
            "duplicates": duplicate_keys(read_capped(Path(path), MAX_BYTES, "a config").decode("utf-8-sig"))}


def duplicate_keys(text: str) -> list[dict[str, Any]]:
    """Keys written more than once in one mapping, which PyYAML (and json) silently collapse to the last value:
    [{"key": "a.b", "values": [[line, text], ...]}] in file order. Aliased nodes are walked once."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError):
        return []
    found: list[dict[str, Any]] = []
    seen: set[int] = set()
    stack: deque[tuple[Any, str]] = deque([(root, "")])
    while stack:
        node, where = stack.popleft()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            by_key: dict[str, list[Any]] = {}
            for key, value in node.value:
                name = str(key.value) if isinstance(key, yaml.ScalarNode) else "?"
                by_key.setdefault(name, []).append(value)
                stack.append((value, f"{where}{name}."))
            for name, values in by_key.items():
                if len(values) > 1:
                    shown = [[v.start_mark.line + 1, v.value if isinstance(v, yaml.ScalarNode) else f"<{v.id}>"]
                             for v in values]
                    found.append({"key": where + name, "values": shown})
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((v, where) for v in node.value)
    return sorted(found, key=lambda d: d["values"][0][0])


_FLAG_STRINGS = ("true", "false", "yes", "no", "on", "off", "1", "0")


def _is_flag(value: Any) -> bool:
    return value is None or isinstance(value, bool) or (isinstance(value, str) and value.strip().lower()
                                                        in _FLAG_STRINGS)


def check_types(kind: str, data: dict[str, Any], shown: str) -> None:
    """Refuse wrongly typed values of the keys fp8doctor interprets (a guess from them would be a wrong answer)."""
    if kind in ("llamafactory", "training_args", "trl", "axolotl"):
        for key in ("fp8", "bf16", "fp16"):
            if kind == "axolotl" and key == "bf16" and data.get(key) == "auto":
                continue  # axolotl resolves it from the GPU
            if key in data and not _is_flag(data[key]):
                raise UsageError(f"{shown}: `{key}` must be true or false, found {type(data[key]).__name__} "
                                 f"{str(data[key])[:40]!r}")
    for key in ("fp8_backend", "mixed_precision"):
        if kind != "deepspeed" and data.get(key) is not None and not isinstance(data[key], str):
            raise UsageError(f"{shown}: `{key}` must be a string, found {type(data[key]).__name__} "
                             f"{str(data[key])[:40]!r}")
    if kind == "accelerate" and data.get("fp8_config") is not None and not isinstance(data["fp8_config"], dict):
        raise UsageError(f"{shown}: `fp8_config` must be a mapping of settings, found "
                         f"{type(data['fp8_config']).__name__}")


def accelerate_config_fields() -> set[str] | None:
    """Top-level keys the installed Accelerate's config loader accepts, read from its source without importing
    it (importing accelerate costs seconds); None when that source cannot be found or parsed."""
    import ast
    import importlib.util

    try:
        spec = importlib.util.find_spec("accelerate")
        if spec is None or not spec.submodule_search_locations:
            return None
        src = Path(next(iter(spec.submodule_search_locations))) / "commands" / "config" / "config_args.py"
        tree = ast.parse(src.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError, ImportError):
        return None
    fields: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name in ("BaseConfig", "ClusterConfig", "SageMakerConfig"):
            fields |= {n.target.id for n in node.body if isinstance(n, ast.AnnAssign) and isinstance(n.target,
                                                                                                  ast.Name)}
    # Legacy keys Accelerate's loader converts before it checks (process_config).
    return fields | {"fp16", "dynamo_backend"} if "mixed_precision" in fields else None


def check_accelerate_keys(data: dict[str, Any], shown: str) -> None:
    fields = accelerate_config_fields()
    unknown = sorted(set(data) - fields) if fields else []
    if unknown:
        raise UsageError(f"{shown}: unknown Accelerate config key(s) {', '.join(unknown[:8])}: `accelerate launch` "
                         "refuses this file (ValueError: unknown keys); fix or remove them")


# The FP8 settings `repro` turns into runs, by config kind: the spelling each accepts -> fp8doctor's backend name.


def check_runnable(kind: str, data: dict[str, Any], shown: str) -> None:
    """Refuse FP8 settings a run cannot be built from: flags that are not booleans, unknown backends/precisions."""
    if kind == "llamafactory":
        for key in ("fp8", "bf16", "fp16"):
            if key in data and data[key] is not None and not isinstance(data[key], bool):
                raise UsageError(f"{shown}: `{key}` must be true or false, found {data[key]!r}")
        backend = data.get("fp8_backend")
        if backend is not None and str(backend).lower() not in LLAMAFACTORY_BACKENDS:
            raise UsageError(f"{shown}: unknown fp8_backend {backend!r}; expected one of te, torchao, auto")
    elif kind == "accelerate":
        mp = data.get("mixed_precision")
        if mp is not None and str(mp).lower() not in MIXED_PRECISIONS:
            raise UsageError(f"{shown}: unknown mixed_precision {mp!r}; expected no, fp16, bf16 or fp8")
        backend = (data.get("fp8_config") or {}).get("backend")
        if backend is not None and str(backend).upper() not in ACCELERATE_BACKENDS:
            raise UsageError(f"{shown}: unknown fp8_config.backend {backend!r}; expected TE, AO or MSAMP")
