"""How far an FP8 run's loss and gradient norm may stray from the same run in bf16 before fp8doctor calls it
divergence: each tolerance is one a library's own tests hold FP8 to, read from the library's source.

- torchao: `test/float8/test_numerics_integration.py` (pytorch/ao, read at commit 04473c15) trains a LLaMa-3-70B
  shaped FeedForward in float8 and in bf16 and asserts `compute_error(ref, fp8) > 20.0` (SQNR in dB) for the output
  and for every parameter's gradient (`grad_sqnr_threshold = 20.0`). SQNR = 20 log10(||ref|| / ||ref - x||), so
  20 dB is a relative error ||ref - x|| / ||ref|| of 10^(-20/20) = 0.1. A loss (a scalar) or a gradient norm
  (| ||a|| - ||b|| | <= ||a - b||) that differs from the bf16 one by more than 0.1 relative breaks that bound.
- Transformer Engine: `tests/pytorch/utils.py` (NVIDIA/TransformerEngine, read at commit 009e6518),
  `quantization_tols(name)`: "fp8", "fp8_delayed_scaling", "fp8_current_scaling", "fp8_blockwise", "mxfp8" use
  `dtype_tols(tex.DType.kFloat8E4M3)` = rtol 0.125, atol 0.0675 ("epsilon = 0.0625"); any "nvfp4" scheme uses
  `dtype_tols(tex.DType.kFloat4E2M1)` = rtol 0.25, atol 0.125. Applied as `torch.testing.assert_close` applies
  them: |fp8 - bf16| <= atol + rtol * |bf16|.
"""

from __future__ import annotations

from dataclasses import dataclass

TORCHAO_SQNR_DB = 20.0
TORCHAO_SOURCE = ("torchao test/float8/test_numerics_integration.py: output and gradient SQNR > 20 dB vs bf16 "
                  "(a relative error of 0.1)")
TE_FP8_SOURCE = ("Transformer Engine tests/pytorch/utils.py quantization_tols: FP8 recipes (delayed, current, "
                 "blockwise, mxfp8) rtol 0.125, atol 0.0675")
TE_NVFP4_SOURCE = "Transformer Engine tests/pytorch/utils.py quantization_tols: nvfp4 rtol 0.25, atol 0.125"


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float
    source: str

    def allows(self, value: float, reference: float) -> bool:
        """assert_close's rule; a NaN or inf on either side is never allowed."""
        diff = abs(value - reference)
        return diff == diff and diff != float("inf") and diff <= self.atol + self.rtol * abs(reference)

    def words(self) -> str:
        return f"rtol {self.rtol:g}" + (f", atol {self.atol:g}" if self.atol else "")


TORCHAO = Tolerance(rtol=10 ** (-TORCHAO_SQNR_DB / 20), atol=0.0, source=TORCHAO_SOURCE)
TE_FP8 = Tolerance(rtol=0.125, atol=0.0675, source=TE_FP8_SOURCE)
TE_NVFP4 = Tolerance(rtol=0.25, atol=0.125, source=TE_NVFP4_SOURCE)


def tolerance(backend: str, recipe: str | None = None) -> Tolerance:
    """The tolerance for a backend ("torchao"/"AO", "te"/"TE") and, for TE, its recipe (NVFP4 or an FP8 one;
    unknown: the FP8 one)."""
    if backend.lower() in ("te", "transformer_engine"):
        return TE_NVFP4 if recipe and "nvfp4" in recipe.lower() else TE_FP8
    return TORCHAO
