"""inspect's knowledge held against the libraries: the layer rules against Accelerate's own torchao conversion of
real transformers models built on the meta device and against the lab's observations; the roofline against
torchao's own float8 roofline; the GPU table's every number has its source."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fp8doctor.knowledge import roofline, shapes
from fp8doctor.knowledge.shapes import FAILS, FP8, KEPT, Layer, classify

OBSERVATIONS = Path(__file__).resolve().parent.parent / "lab" / "observations"

# Small configs of four real model classes, each with one dimension not divisible by 16 (or by 32 only).
CONFIGS = {
    "llama": dict(hidden_size=64, intermediate_size=120, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=256),
    "qwen2": dict(hidden_size=64, intermediate_size=136, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=1001, tie_word_embeddings=False),
    "mistral": dict(hidden_size=96, intermediate_size=168, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, vocab_size=256, head_dim=24),
    "gemma": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                  num_key_value_heads=1, head_dim=18, vocab_size=256),
}


def meta_model(model_type: str) -> torch.nn.Module:
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **CONFIGS[model_type]))


def layers_of(model: torch.nn.Module) -> list[Layer]:
    return [Layer(n, m.in_features, m.out_features) for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear)]


@pytest.mark.parametrize("model_type", sorted(CONFIGS))
def test_accelerate_ao_rule_equals_accelerates_own_conversion_on_meta(model_type: str) -> None:
    from accelerate.utils.ao import convert_model_to_fp8_ao
    from torchao.float8 import Float8LinearConfig

    model = meta_model(model_type)
    layers = layers_of(model)
    predicted = [layer.name for layer, (status, _) in zip(layers, classify(layers, "accelerate-ao"), strict=True)
                 if status == FP8]
    convert_model_to_fp8_ao(model, config=Float8LinearConfig(emulate=True))
    converted = [n for n, m in model.named_modules() if type(m).__name__ == "Float8Linear"]
    assert predicted == converted
    assert 0 < len(converted) < len(layers) - 2  # the planted dims are really skipped, not only first/last


def test_gemma_head_dim_18_keeps_attention_out_of_every_path() -> None:
    layers = layers_of(meta_model("gemma"))
    o_proj = next(i for i, layer in enumerate(layers) if layer.name.endswith("layers.1.self_attn.o_proj"))
    for target in shapes.TARGETS:
        status, reason = classify(layers, target)[o_proj]
        assert status == KEPT, (target, status)
        assert "in_features 72 not divisible by 16" in reason or "after " in reason


def test_te_conversion_stops_at_the_first_bad_linear_of_its_parent_only() -> None:
    layers = [Layer("a.0.q", 64, 64), Layer("a.0.bad", 64, 40), Layer("a.0.k", 64, 64), Layer("a.0.sub.x", 64, 64),
              Layer("a.1.q", 64, 64), Layer("head", 64, 48)]
    te = classify(layers, "accelerate-te")
    assert [s for s, _ in te] == [FP8, KEPT, KEPT, KEPT, FP8, FP8]
    assert "after a.0.bad" in te[2][1] and "after a.0.bad" in te[3][1]
    mx = classify(layers, "te-mxfp8")
    assert [s for s, _ in mx] == [FP8, KEPT, KEPT, KEPT, FP8, FAILS]  # 48 is a multiple of 16, not of 32
    root = classify([Layer("0", 64, 64), Layer("1", 64, 40), Layer("2", 64, 64)], "accelerate-te")
    assert [s for s, _ in root] == [FP8, KEPT, KEPT]


def test_torchao_rule_has_no_first_last_filter() -> None:
    layers = [Layer("a", 64, 64), Layer("b", 40, 64), Layer("c", 64, 64)]
    assert [s for s, _ in classify(layers, "torchao")] == [FP8, KEPT, FP8]
    assert [s for s, _ in classify(layers, "accelerate-ao")] == [KEPT, KEPT, KEPT]


def _cells() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(OBSERVATIONS.glob("acc*.json"))]


def test_the_lab_saw_four_of_six_linear_in_fp8_on_every_release_the_rule_names() -> None:
    """The accelerator probe's tiny model: six Linear, every dim a multiple of 16."""
    dims = [32, 64, 64, 64, 64, 64, 32]
    tiny = [Layer(str(2 * i), a, b) for i, (a, b) in enumerate(zip(dims, dims[1:], strict=False))]
    predicted = sum(1 for s, _ in classify(tiny, "accelerate-ao") if s == FP8)
    seen = {}
    for cell in _cells():
        counts = {c["fp8_layers"] for c in cell.get("probes", {}).get("accelerator", [])
                  if c.get("outcome") == "ok" and c.get("fp8_layers")}
        if counts:
            seen[".".join(cell["versions"]["accelerate"].split(".")[:2])] = counts
    assert set(seen) == set(shapes.AO_FIRST_LAST_OBSERVED)
    assert all(counts == {predicted} for counts in seen.values()), seen


def test_ao_filter_observations_layer_by_layer() -> None:
    checked = 0
    for cell in _cells():
        acc = cell["versions"].get("accelerate")
        for case in cell.get("probes", {}).get("ao_filter", []):
            layers = [Layer(x["name"], x["in"], x["out"]) for x in case["linears"]]
            predicted = classify(layers, "accelerate-ao", acc)
            if case["outcome"] == "ok":
                assert [s == FP8 for s, _ in predicted] == [x["fp8"] for x in case["linears"]], (cell["cell"], case)
            else:
                assert all(s == FAILS for s, _ in predicted), (cell["cell"], case)
            checked += 1
    assert checked >= 2


def test_ao_path_blocked_on_the_releases_that_raise() -> None:
    assert "TypeError" in (shapes.ao_path_blocked("1.5.2") or "")
    assert "no AORecipeKwargs" in (shapes.ao_path_blocked("1.3.0") or "")
    assert shapes.ao_path_blocked("1.15.0") is None


@pytest.mark.parametrize("shape", [(8192, 4096, 4096), (8192, 4096, 11008), (16, 64, 48), (2048, 11008, 4096),
                                   (16, 8192, 8192), (8192, 8192, 16)])  # the last two memory-bound
def test_roofline_equals_torchaos_own(shape: tuple[int, int, int]) -> None:
    from torchao.testing.training import roofline_utils as ru

    name = "NVIDIA H100"
    t = ru.get_specs(name)
    spec = roofline.Spec(t["bf16_peak_tops"], t["fp8_peak_tops"], t["peak_mem_bw_bytes_sec"],
                         t["pct_achievable_gemm_tops"], t["pct_achievable_mem_bw"], ru.KERNEL_LAUNCH_OVERHEAD_SEC)
    m, k, n = shape
    bf16 = float(ru.get_gemm_time_sympy(m, k, n, torch.bfloat16, None, None, name))
    assert roofline.linear_s(spec, m, k, n, None) == pytest.approx(bf16, rel=1e-12)
    for recipe, mx in (("tensorwise", None), (None, "mxfp8_cublas")):
        fp8 = (float(ru.get_gemm_time_sympy(m, k, n, torch.float8_e4m3fn, recipe, mx, name))
               + float(ru.get_float8_mem_sympy(m, k, n, recipe, mx, False, name)))
        assert roofline.linear_s(spec, m, k, n, recipe or "mxfp8") == pytest.approx(fp8, rel=1e-12)


def test_gpu_spec_takes_torchaos_efficiencies_and_attention_counts_as_gemms() -> None:
    from torchao.testing.training import roofline_utils as ru

    t, h100 = ru.get_specs("NVIDIA H100"), roofline.spec("H100")
    assert (h100.gemm_efficiency, h100.memory_efficiency, h100.launch_s) == (
        t["pct_achievable_gemm_tops"], t["pct_achievable_mem_bw"], ru.KERNEL_LAUNCH_OVERHEAD_SEC)
    assert h100.bf16_flops == pytest.approx(t["bf16_peak_tops"], rel=1e-3) and h100.fp8_flops == t["fp8_peak_tops"]
    # causal attention: QK^T and PV, forward + two backward GEMMs each, half the scores; compute-bound bf16 GEMMs
    seq, width = 8192, 4096
    gemm = roofline.gemm_s(h100, seq, width, seq, fp8=False)
    assert roofline.attention_s(h100, 2, seq, width, 3) == pytest.approx(2 * 3 * 3 * 2 * gemm / 2, rel=1e-12)


def test_a_layer_is_named_as_torch_names_a_linear_and_a_recipe_must_be_known() -> None:
    linear = torch.nn.Linear(16, 32)
    row = Layer("model.up", 16, 32).to_dict()
    assert row.pop("name") == "model.up" and row == {k: getattr(linear, k) for k in row} and len(row) == 2
    with pytest.raises(ValueError, match="unknown recipe 'rowwise'"):
        roofline.linear_s(roofline.spec("H100"), 16, 16, 16, "rowwise")


def test_gpu_table_has_the_named_gpus_each_number_sourced() -> None:
    table = roofline.table()
    assert set(roofline.gpu_names()) == {"H100", "H200", "B200", "L40S", "RTX4090"}
    for name, row in table["gpus"].items():
        assert row["source"].startswith("https://"), name
        assert row["fp8_flops"] == pytest.approx(2 * row["bf16_flops"], rel=0.02), name
        assert row["memory_bytes_per_s"] > 1e11, name
    assert "torchao" in table["efficiency"]["source"]


def test_a_release_whose_torchao_path_raises_fails_every_layer() -> None:
    # accelerate 1.5 raises TypeError in the filter (acc1.5 cell): no layer is converted
    layers = [Layer("a", 64, 64), Layer("b", 64, 64)]
    got = classify(layers, "accelerate-ao", "1.5.2")
    assert [s for s, _ in got] == [FAILS, FAILS] and "TypeError" in got[0][1]
