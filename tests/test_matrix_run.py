"""Matrix orchestration with a stand-in runner (the engine itself is exercised for real in test_matrix_cli and
test_gpu_matrix): GPU pinning per worker, multi-process cells last, skipped cells never run, one line per cell."""

from __future__ import annotations

import json
import threading

from fp8doctor.matrix import plan, run, store

GPU_BOX = {"gpus": [{"index": "0", "name": "H100", "cc": (9, 0)}, {"index": "1", "name": "H100", "cc": (9, 0)}],
           "gpu_count": 2, "cc": (9, 0), "te_import_error": None,
           "installed": {"torchao": "0.18.0", "transformer-engine": None}}


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None, str]] = []
        self.lock = threading.Lock()

    def __call__(self, spec):
        with self.lock:
            self.calls.append((spec.entry, spec.env.get("CUDA_VISIBLE_DEVICES"), spec.backend))
        if spec.recipe == "rowwise":
            raise RuntimeError("engine bug")
        return {"spec": spec.to_dict(), "outcome": "finished", "losses": [2.0, 1.0], "device": "cuda:0",
                "fp8_layers": ["a"], "eligible_layers": ["a"], "forwards": {"fp8_module_forwards": 4},
                "fp8_active": spec.backend != "none", "step_times_s": [1.0, 0.1]}


def test_gpu_pinning_order_store_and_crash_capture(tmp_path) -> None:
    cells = plan.plan(GPU_BOX, recipes=["tensorwise", "rowwise", "current"], entries=["native", "multiproc"], steps=2)
    out = tmp_path / "m.jsonl"
    rec = Recorder()
    result = run.execute(cells, workers=2, out=str(out), runner=rec, gpu_ids=["0", "1"])
    skipped = [c for c in cells if c.skip]
    assert skipped and all(c.spec.backend == "te" for c in skipped)
    assert len(rec.calls) == len(cells) - len(skipped)
    assert all(b != "te" for _, _, b in rec.calls)
    pinned = [gpu for entry, gpu, _ in rec.calls if entry != "multiproc"]
    assert set(pinned) <= {"0", "1"} and None not in pinned
    multi = [i for i, (entry, _, _) in enumerate(rec.calls) if entry == "multiproc"]
    assert all(rec.calls[i][1] is None for i in multi)
    assert min(multi) > max(i for i, (e, _, _) in enumerate(rec.calls) if e != "multiproc")  # run last, alone
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(x["key"] for x in lines) == sorted(c.key for c in cells)
    crashed = [r for r in result.rows if r.result["outcome"] == "crashed"]
    assert crashed and all(r.cell.spec.recipe == "rowwise" and r.status == "fail" for r in crashed)
    assert "engine bug" in crashed[0].verdicts[0].detail
    assert result.exit_code() == 1


def test_resume_runs_only_what_is_missing(tmp_path) -> None:
    cells = plan.plan(GPU_BOX, backends=["torchao"], recipes=["tensorwise"], entries=["native"], steps=2)
    out = tmp_path / "m.jsonl"
    first = Recorder()
    run.execute(cells, out=str(out), runner=first)
    assert len(first.calls) == 2
    again = Recorder()
    res = run.execute(cells, out=str(out), resume=True, runner=again)
    assert again.calls == [] and all(r.reused for r in res.rows)
    assert len(store.load(out).records) == 2 and len(out.read_text().splitlines()) == 2
