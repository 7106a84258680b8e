"""`fp8doctor report --model`: the inspect part, and a bad --model refused before anything is measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SMALL_ODD = {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_size": 256,
             "intermediate_size": 680, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
             "vocab_size": 1000, "tie_word_embeddings": False}


def test_report_model_part_has_the_layer_table_and_warns_on_shapes(tmp_path: Path) -> None:
    from fp8doctor.report.build import Options, build

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text(json.dumps(SMALL_ODD))
    report = build(Options(out_dir=str(tmp_path / "out"), model=str(tmp_path / "model"), gpu="L40S",
                           skip_parts=("env", "repro", "matrix"), progress=False))
    part = report.data["parts"][0]
    assert part["name"] == "inspect" and part["status"] == "warn", part["summary"]
    # 2 x (gate, up, down) of width 680, and lm_head (vocab 1000); Accelerate keeps lm_head as the last Linear anyway
    assert any(w.startswith("Accelerate + torchao: 6 Linear layer(s)") for w in part["summary"]["warnings"])
    assert any(w.startswith("torchao: 7 Linear layer(s)") for w in part["summary"]["warnings"]), part["summary"]
    assert "estimated step speed-up on L40S" in part["summary"]["ran"]
    assert "| model.layers.*.mlp.down_proj" in report.markdown
    assert "680 not divisible by 16" in report.markdown
    assert report.data["options"]["model"] == "model" and report.data["options"]["gpu"] == "L40S"


@pytest.mark.parametrize(("args", "needle"), [(["--model", "absent"], "absent: no such file"),
                                              (["--gpu", "H100"], "give --model PATH too")])
def test_bad_model_is_one_line_and_exit_2_before_measuring(tmp_path: Path, args: list[str], needle: str) -> None:
    p = subprocess.run([sys.executable, "-m", "fp8doctor", "report", "--out-dir", str(tmp_path), *args],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert p.returncode == 2 and needle in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert os.listdir(tmp_path) == []
