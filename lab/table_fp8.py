"""Two sections of docs/generations.md: ACCELERATE_FP8_BACKEND without a handler, and the fp8_config keys each
release reads (lab/probes/fp8_config_keys.py). Rendered by lab/table.py."""

from __future__ import annotations

from collections.abc import Callable

BACKEND_VALUES = ("AO", "TE", "MSAMP", "NO", "TRANSFORMER_ENGINE")


def backend_section(records: list[dict], short: Callable[[dict | None], str], find: Callable[..., dict | None],
                    table: Callable[[list[str], list[list[str]]], list[str]]) -> list[str]:
    body = []
    for rec in records:
        cases = rec.get("probes", {}).get("accelerator") or []
        if not any(c.get("inputs", {}).get("env", {}).get("ACCELERATE_FP8_BACKEND") == "TE" for c in cases):
            continue
        row = [rec["cell"], rec["versions"].get("accelerate") or "", rec["versions"].get("torchao") or "none"]
        for value in BACKEND_VALUES:
            row.append(short(find(cases, mp_arg=None, handler=None,
                                  env={"ACCELERATE_MIXED_PRECISION": "fp8", "ACCELERATE_FP8_BACKEND": value})))
        body.append(row)
    head = ["cell", "accelerate", "torchao"] + [f"env fp8 + FP8_BACKEND={v}" for v in BACKEND_VALUES]
    return ["## ACCELERATE_FP8_BACKEND with mixed precision fp8 and no handler", "", *table(head, body), "",
            "The same values with `mixed_precision='fp8'` as the argument instead of the variable are recorded too "
            "(lab/observations/*.json).", ""]


def _reached(case: dict) -> list[str]:
    reaches = case.get("reaches") or {}
    return sorted(f"{cls}.{field}" for cls, fields in reaches.items() if isinstance(fields, list) for field in fields)


def _keys_row(rec: dict, case: dict, clip: Callable[[str], str]) -> list[str]:
    base = [rec["cell"], rec["versions"].get("accelerate") or "", case["inputs"]["backend"]]
    if case.get("outcome") == "raised":
        return base + ["launch crashes: " + clip(f"{case.get('type')}: {case.get('message')}"), ""]
    results = case.get("keys") or {}
    spawn = [r["launch"] for r in results.values() if (r.get("launch") or {}).get("stage") == "spawn"]
    if results and len(spawn) == len(results):
        return base + ["launch never starts the script: " + clip(f"{spawn[0]['type']}: {spawn[0]['message']}"), ""]
    read = sorted(key for key, r in results.items() if _reached(r))
    unread = sorted(key for key, r in results.items() if r.get("outcome") == "ok" and not _reached(r))
    return base + [", ".join(read) or "none", ", ".join(unread) or "none"]


def keys_section(records: list[dict], clip: Callable[[str], str],
                 table: Callable[[list[str], list[list[str]]], list[str]]) -> list[str]:
    body = [_keys_row(rec, case, clip) for rec in records
            for case in rec.get("probes", {}).get("fp8_config_keys") or [] if case["inputs"].get("what") == "keys"]
    head = ["cell", "accelerate", "fp8_config backend", "keys read", "keys no recipe class reads"]
    return ["## fp8_config keys of an Accelerate config file, as `accelerate launch` passes them on", "",
            *table(head, body), "",
            "Each key alone beside `backend` in `{distributed_type: NO, mixed_precision: fp8, fp8_config: {...}}`; "
            "read = a field of a recipe class built from the variables the launched script sees differs from the "
            "same file without the key (TE / MS-AMP availability checks answered True; which fields, per class, is "
            "in the records; see lab/probes/fp8_config_keys.py).", ""]
