"""`fp8doctor inspect --model` for real: a 7B-shaped Llama config with one dimension not divisible by 16, in every
format, its time and memory; bad input is one line and exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fp8doctor import cli

LLAMA_7B = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 4096,
            "intermediate_size": 11000, "num_hidden_layers": 32, "num_attention_heads": 32,
            "num_key_value_heads": 32, "vocab_size": 32000, "tie_word_embeddings": False}


def write_config(folder: Path, data: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(data))
    return folder


def fp8doctor(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fp8doctor", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def llama7b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(tmp_path_factory.mktemp("llama7b"), LLAMA_7B)


def test_7b_json_names_the_mlp_layers_and_counts_coverage(llama7b: Path) -> None:
    p = fp8doctor("inspect", "--model", str(llama7b), "--gpu", "H100", "--format", "json")
    assert p.returncode == 0, p.stderr[-2000:]
    data = json.loads(p.stdout)
    assert data["model"]["architecture"] == "LlamaForCausalLM" and data["model"]["linear_layers"] == 225
    mlp = [x for x in data["layers"] if ".mlp." in x["name"]]
    assert len(mlp) == 96
    for layer in mlp:
        for target in ("accelerate-ao", "torchao", "accelerate-te", "te-mxfp8"):
            verdict = layer["targets"][target]
            assert verdict["status"] == "kept", (layer, target)
            if target.startswith("accelerate-te") or target == "te-mxfp8":
                # Accelerate's TE walk returns at gate_proj: up_proj and down_proj are never looked at.
                first = layer["name"].endswith("gate_proj")
                assert ("11000 not divisible by 16" if first else "after model.layers.") in verdict["reason"]
            else:
                assert "11000 not divisible by 16" in verdict["reason"], (layer, target)
    # Coverage from the shapes alone: attention 4 x 4096^2 per layer, MLP 3 x 4096 x 11000, lm_head 4096 x 32000.
    attn, mlp_f, head = 4 * 4096 * 4096, 3 * 4096 * 11000, 4096 * 32000
    total = 32 * (attn + mlp_f) + head
    assert data["coverage"]["torchao"]["flops_share"] == pytest.approx((32 * attn + head) / total)
    assert data["coverage"]["accelerate-ao"]["flops_share"] == pytest.approx((32 * attn - 4096 * 4096) / total)
    assert data["coverage"]["accelerate-ao"]["fp8_layers"] == 127
    est = data["estimate"]
    assert est["gpu"] == "H100" and est["tokens"] == 4 * 2048
    assert 1.0 < est["targets"]["torchao"]["speedup"] < est["targets"]["torchao"]["linear_speedup"]
    assert est["targets"]["te-mxfp8"]["supported"] is False and "10.0" in est["targets"]["te-mxfp8"]["reason"]
    assert set(est["class_speedup"]["model.layers.*.mlp.down_proj"]) == {"tensorwise"}


def test_7b_text_and_markdown_say_which_layers_and_why(llama7b: Path) -> None:
    text = fp8doctor("inspect", "--model", str(llama7b), "--gpu", "B200")
    assert text.returncode == 0, text.stderr[-2000:]
    out = text.stdout
    assert "model.layers.*.mlp.down_proj (32 layers) 11000x4096: in_features 11000 not divisible by 16" in out
    assert "model.layers.*.mlp.down_proj (32 layers) 11000x4096: after model.layers.N.mlp.gate_proj under" in out
    assert "model.layers.0.self_attn.q_proj 4096x4096: the first Linear" in out
    attn, mlp, head = 4 * 4096 * 4096, 3 * 4096 * 11000, 4096 * 32000
    torchao_share = 100 * (32 * attn + head) / (32 * (attn + mlp) + head)
    assert "Linear FLOPs in FP8" in out and f"{torchao_share:.1f}%" in out
    assert "Estimated FP8 speed-up on NVIDIA B200" in out and "mxfp8" in out
    assert "https://resources.nvidia.com/en-us-blackwell-architecture" in out
    md = fp8doctor("inspect", "--model", str(llama7b / "config.json"), "--format", "md")
    assert md.returncode == 0, md.stderr[-2000:]
    assert "| model.layers.*.mlp.gate_proj" in md.stdout and "No speed estimate: name a GPU with --gpu." in md.stdout


def test_7b_builds_on_meta_within_5_s_and_1_gb(llama7b: Path) -> None:
    """The model build and the analysis after the imports (which the machine's load dominates), in a fresh process;
    resident memory over the whole process."""
    code = ("import resource, sys, time\n"
            "import transformers.models.llama.modeling_llama\n"
            "from fp8doctor.inspect.command import inspect_model\n"
            "t = time.monotonic()\n"
            "data = inspect_model(sys.argv[1], gpu='H200', batch=4, seq_len=4096)\n"
            "print(time.monotonic() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,\n"
            "      data['model']['parameters'])\n")
    p = subprocess.run([sys.executable, "-c", code, str(llama7b)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    seconds, rss, params = p.stdout.split()
    assert float(seconds) <= 5.0
    assert int(rss) < 1 << 30
    assert int(params) == 32 * (4 * 4096 * 4096 + 3 * 4096 * 11000 + 2 * 4096) + 2 * 32000 * 4096 + 4096


BAD_CONFIGS = {
    "not-json": ("{nope", "not a JSON model config"),
    "a-list": ([1, 2], "no \"model_type\" string"),
    "no-type": ({"hidden_size": 64}, "no \"model_type\" string"),
    "unknown-type": ({"model_type": "no-such-model"}, "cannot read this config"),
    "too-deep": ({"model_type": "llama", "num_hidden_layers": 10**9}, "not an integer from 0 to 1024"),
    "negative": ({"model_type": "llama", "hidden_size": -64, "num_hidden_layers": 1}, "cannot build a model"),
}


def one_line_usage_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        sys.exit(cli.main(argv))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    content, expected = BAD_CONFIGS[case]
    path = tmp_path / "config.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    assert expected in one_line_usage_error(capsys, ["inspect", "--model", str(tmp_path)])


def test_bad_paths_and_options_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "no such file" in one_line_usage_error(capsys, ["inspect", "--model", str(tmp_path / "absent")])
    assert "no such file" in one_line_usage_error(capsys, ["inspect", "--model", str(tmp_path)])  # no config.json
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    assert "FIFO" in one_line_usage_error(capsys, ["inspect", "--model", str(fifo)])
    good = write_config(tmp_path / "good", {"model_type": "llama", "num_hidden_layers": 1})
    assert "--batch must be" in one_line_usage_error(capsys, ["inspect", "--model", str(good), "--batch", "0"])
    assert "--seq-len must be" in one_line_usage_error(capsys, ["inspect", "--model", str(good), "--seq-len",
                                                                "99999999"])
    assert "invalid choice" in one_line_usage_error(capsys, ["inspect", "--model", str(good), "--gpu", "A100"])
