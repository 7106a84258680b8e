"""The distributed-plugin section of docs/generations.md, rendered from the cells that ran lab/probes/distributed.py
(lab/cells_dist.yaml); lab/table.py calls `render` and keeps these cells out of its other tables."""

from __future__ import annotations

MESSAGE_CHARS = 70

COLUMNS = [
    ("FSDP2 plugin, ACCELERATE_USE_CPU=true", dict(plugin="fsdp2", use_cpu=True, force_state=None)),
    ("FSDP2, state set", dict(plugin="fsdp2", force_state=True, all_gather=False)),
    ("FSDP2, state set, float8 all-gather", dict(plugin="fsdp2", force_state=True, all_gather=True)),
    ("FSDP1, state set", dict(plugin="fsdp1", force_state=True, all_gather=False)),
    ("FSDP1, state set, float8 all-gather", dict(plugin="fsdp1", force_state=True, all_gather=True)),
    ("DeepSpeed ZeRO-2, bf16", dict(plugin="deepspeed-z2", use_cpu=False, precision="bf16")),
    ("DeepSpeed ZeRO-2, fp8", dict(plugin="deepspeed-z2", use_cpu=False, precision="fp8")),
]

INTRO = """## Distributed plugins (FSDP1, FSDP2, DeepSpeed) with FP8

Cells of `lab/cells_dist.yaml`, probed by `lab/probes/distributed.py`: each entry is one case of two ranks under
torchrun over gloo on CPU, a tiny Llama (13 Linear layers eligible for torchao after Accelerate's first/last
filter), torchao FP8 with `emulate=True`, `prepare(model, optimizer)` and two training steps. An entry reads
`distributed_type -> prepared class; state mixed precision / FP8 backend; FP8 layers inside sharded units / FP8
layers (units); order of Accelerate's calls`, or the exception (type at stage: message), or `hung at` the
innermost library frame. "state set": on CPU Accelerate drops an FSDP plugin, so the case does what its state
does on a GPU (`distributed_type = FSDP`, `fsdp_plugin = plugin`) before `prepare()`.
"""


def _match(case: dict, want: dict) -> bool:
    got = case.get("inputs", {})
    return all(got.get(k) == v for k, v in want.items())


def _clip(text: str) -> str:
    text = " ".join(str(text).split())
    return (text[:MESSAGE_CHARS] + "…" if len(text) > MESSAGE_CHARS else text).replace("|", "\\|")


def short(case: dict | None) -> str:
    if case is None:
        return ""
    state = f"{case.get('mixed_precision')} / {case.get('fp8_backend')}"
    if case.get("outcome") == "ok":
        order = " → ".join(case.get("order") or []) or "-"
        gather = ", float8 all-gather" if case.get("float8_all_gather") and case.get("units") else ""
        return (f"{case.get('distributed_type')} → {case.get('prepared_class')}; {state}; "
                f"{case.get('fp8_inside_units')}/{case.get('fp8_layers')} ({case.get('units')} units{gather}); {order}")
    if case.get("outcome") == "raised":
        procs = f" ({case['num_processes']} process counted)" if case.get("num_processes") == 1 else ""
        return (f"{case.get('distributed_type')}{procs}; {state}; {case.get('type')} at {case.get('stage')}: "
                f"{_clip(case.get('message', ''))}")
    if case.get("outcome") == "hung":
        return "hung at " + ", ".join(case.get("hung_at") or ["?"])
    return str(case.get("outcome"))


def rows(records: list[dict]) -> list[list[str]]:
    out = []
    for rec in records:
        versions = rec.get("versions", {})
        cases = rec.get("probes", {}).get("distributed", [])
        builds = {str(c["deepspeed_op_build"]) for c in cases if "deepspeed_op_build" in c}
        op = ", ".join(sorted(builds))
        deepspeed = next((p.split("==", 1)[1] for p in rec.get("pip", []) if p.startswith("deepspeed==")), "")
        out.append([rec["cell"], versions.get("accelerate") or "", deepspeed, op]
                   + [short(next((c for c in cases if _match(c, want)), None)) for _, want in COLUMNS])
    return out


def _case(cases: list[dict], want: dict) -> dict | None:
    return next((c for c in cases if _match(c, want)), None)


def closing(records: list[dict]) -> list[str]:
    """What the lab observed per release and plugin, and the findings that rest on it."""
    lines = ["What the lab observed (per cell; cases that did not run are said so):", ""]
    for rec in records:
        cases = rec.get("probes", {}).get("distributed", [])
        acc = rec.get("versions", {}).get("accelerate")
        drop = _case(cases, COLUMNS[0][1])
        fsdp2 = [c for c in (_case(cases, COLUMNS[1][1]), _case(cases, COLUMNS[2][1])) if c]
        ds = [c for c in (_case(cases, COLUMNS[5][1]), _case(cases, COLUMNS[6][1])) if c]
        parts = []
        if drop:
            parts.append(f"FSDP2 plugin with ACCELERATE_USE_CPU=true: {drop.get('distributed_type')}, prepared as "
                         f"{drop.get('prepared_class')} (plugin dropped)")
        ok = [c for c in fsdp2 if c.get("prepared_class", "").startswith("FSDP")]
        if ok:
            parts.append(f"FSDP2 with the state set: {' → '.join(ok[0].get('order') or [])}, "
                         f"{ok[0].get('fp8_inside_units')}/{ok[0].get('fp8_layers')} FP8 layers inside "
                         f"{ok[0].get('units')} units")
        for c in ds:
            if c.get("outcome") == "raised":
                parts.append(f"DeepSpeed ZeRO-2 {c['inputs']['precision']}: state {c.get('distributed_type')} "
                             f"mixed_precision {c.get('mixed_precision')}, {c.get('type')} at {c.get('stage')}")
            elif c.get("outcome") == "ok":
                parts.append(f"DeepSpeed ZeRO-2 {c['inputs']['precision']}: state {c.get('distributed_type')} "
                             f"mixed_precision {c.get('mixed_precision')} / FP8 backend {c.get('fp8_backend')}, "
                             f"prepared as {c.get('prepared_class')}, {c.get('fp8_layers')} FP8 layers")
            else:
                parts.append(f"DeepSpeed ZeRO-2 {c['inputs']['precision']}: not observed ({c.get('outcome')}: "
                             "DeepSpeed's CPU op build did not finish on the loaded lab machine)")
        lines.append(f"- accelerate {acc}: " + "; ".join(parts) + ".")
    lines += ["", "Findings and entries resting on these observations:", "",
              "- `dist.fsdp-version` (env): FSDP2 converts before `fully_shard` and all-gathers in float8 when "
              "asked (the FSDP2 columns); FSDP1 warns with the `fsdp_version: 2` edit.",
              "- no DeepSpeed precision finding: the source lead that accelerate <= 1.10 sets the state's "
              "precision to `no` under DeepSpeed (FP8 off) is contradicted by the DeepSpeed fp8 column of 1.6.",
              "- matrix `deepspeed` entry skipped on CPU: the DeepSpeed columns' `AssertionError` and the "
              "plugin drop with ACCELERATE_USE_CPU=true.",
              "- matrix `fsdp2` entry on CPU: the state step of the \"state set\" columns.", ""]
    return lines


def render(records: list[dict]) -> list[str]:
    head = ["cell", "accelerate", "deepspeed", "DeepSpeed CPU op built"] + [name for name, _ in COLUMNS]
    table = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    table += ["| " + " | ".join(r) + " |" for r in rows(records)]
    return [INTRO, *table, "", *closing(records)]
