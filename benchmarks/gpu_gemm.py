"""FP8 against bf16 on a CUDA GPU: GEMM TFLOP/s for a few shapes next to the chip's peak, and the FP8/bf16
step time of a model large enough to benefit (Llama-3-8B-shaped FFN blocks, torchao tensorwise FP8).

    python benchmarks/gpu_gemm.py [--iters 50] [--layers 4] [--tokens 8192] [--no-compile]

On a machine that cannot run FP8 it prints the doctor's reason (the same capability checks as `fp8doctor env`)
and exits 0. GEMMs: bf16 `torch.matmul` vs FP8 e4m3 `torch._scaled_mm` (per-tensor scales, bf16 output), timed
with CUDA events after a warm-up. Model: fwd + bwd + AdamW step, bf16 weights and activations vs the same model
converted by `torchao.float8.convert_to_float8_training` (tensorwise), both under `torch.compile` unless
--no-compile (torchao's casts are only fused when compiled).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

from tabulate import tabulate

# Dense (no sparsity) tensor-core peaks in TFLOP/s from NVIDIA's data sheets: (bf16, fp8). Matched in this order
# against torch.cuda.get_device_name(), so that more specific names come first.
PEAKS: list[tuple[str, float, float]] = [
    ("GB200", 2500.0, 5000.0),
    ("B200", 2250.0, 4500.0),
    ("H100 NVL", 835.0, 1670.0),
    ("H100 PCIe", 756.0, 1513.0),
    ("H200", 989.0, 1979.0),
    ("H100", 989.0, 1979.0),
    ("H800", 989.0, 1979.0),
    ("H20", 148.0, 296.0),
    ("L40S", 362.0, 733.0),
    ("L4", 121.0, 242.5),
    ("RTX 4090", 165.2, 330.3),
]
SHAPES = [(1024, 1024, 1024), (4096, 4096, 4096), (8192, 8192, 8192), (8192, 4096, 14336), (16384, 8192, 8192)]


def skip_reason() -> str | None:
    """Why FP8 cannot run here, from fp8doctor's own facts and capability checks; None when it can."""
    from fp8doctor.knowledge.capability import fp8_family_supported
    from fp8doctor.runs.machine import snapshot

    facts = snapshot()
    if not facts.get("gpu_count"):
        status = str(facts.get("gpu_status") or "no CUDA GPU visible")
        return f"No CUDA GPU is visible ({status.removeprefix('no CUDA device: ')})."
    ok, why = fp8_family_supported(facts.get("cc"), "per-tensor")
    if not ok:
        return why
    import torch

    if not torch.cuda.is_available():
        return f"torch {torch.__version__} cannot use CUDA here (a CPU build, or the driver is too old)."
    return None


def peak(name: str) -> tuple[float, float] | None:
    for key, bf16, fp8 in PEAKS:
        if key in name:
            return bf16, fp8
    return None


def cuda_time(fn: Any, iters: int, warmup: int = 10) -> float:
    """Median seconds per call over `iters` calls (CUDA events around each call)."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000.0)
    return statistics.median(times)


def gemm_rows(iters: int) -> list[tuple[Any, ...]]:
    import torch

    dev = torch.device("cuda")
    name = torch.cuda.get_device_name(dev)
    peaks = peak(name)
    one = torch.tensor(1.0, device=dev)
    rows = []
    for m, k, n in SHAPES:
        a = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
        b = torch.randn(k, n, device=dev, dtype=torch.bfloat16)
        a8 = a.to(torch.float8_e4m3fn)
        b8 = b.t().contiguous().to(torch.float8_e4m3fn).t()  # column-major, as _scaled_mm requires

        def fp8(a8: Any = a8, b8: Any = b8) -> Any:
            out = torch._scaled_mm(a8, b8, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
            return out[0] if isinstance(out, tuple) else out  # torch < 2.4 returned (out, amax)

        flops = 2.0 * m * n * k
        t_bf16 = cuda_time(lambda a=a, b=b: torch.matmul(a, b), iters)
        t_fp8 = cuda_time(fp8, iters)
        tf_bf16, tf_fp8 = flops / t_bf16 / 1e12, flops / t_fp8 / 1e12
        pct = (f"{100 * tf_bf16 / peaks[0]:.0f}%", f"{100 * tf_fp8 / peaks[1]:.0f}%") if peaks else ("?", "?")
        rows.append((f"{m}x{k}x{n}", f"{tf_bf16:.0f}", pct[0], f"{tf_fp8:.0f}", pct[1], f"{tf_fp8 / tf_bf16:.2f}x"))
    return rows


def ffn_model(layers: int, hidden: int, inter: int) -> Any:
    import torch
    from torch import nn

    class FFN(nn.Module):  # Llama's SwiGLU MLP with a residual
        def __init__(self) -> None:
            super().__init__()
            self.gate = nn.Linear(hidden, inter, bias=False)
            self.up = nn.Linear(hidden, inter, bias=False)
            self.down = nn.Linear(inter, hidden, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.down(nn.functional.silu(self.gate(x)) * self.up(x))

    return nn.Sequential(*[FFN() for _ in range(layers)]).to("cuda", torch.bfloat16)


def step_time(fp8: bool, layers: int, tokens: int, iters: int, compile_model: bool) -> float:
    import torch

    torch.manual_seed(0)
    model = ffn_model(layers, 4096, 14336)
    if fp8:
        from torchao.float8 import Float8LinearConfig, convert_to_float8_training

        convert_to_float8_training(model, config=Float8LinearConfig.from_recipe_name("tensorwise"))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    run = torch.compile(model) if compile_model else model
    x = torch.randn(tokens, 4096, device="cuda", dtype=torch.bfloat16)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        run(x).float().pow(2).mean().backward()
        opt.step()

    return cuda_time(step, iters, warmup=5)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=50, help="timed iterations per GEMM (default 50)")
    ap.add_argument("--layers", type=int, default=4, help="FFN blocks in the model (default 4)")
    ap.add_argument("--tokens", type=int, default=8192, help="tokens per step (batch x sequence, default 8192)")
    ap.add_argument("--no-compile", action="store_true", help="run the model eagerly")
    args = ap.parse_args(argv)
    reason = skip_reason()
    if reason:
        print(f"skipped: fp8doctor: {reason}")
        return 0
    import torch

    name = torch.cuda.get_device_name(0)
    peaks = peak(name)
    print(f"{name}, torch {torch.__version__}; dense peak "
          + (f"bf16 {peaks[0]:g} / fp8 {peaks[1]:g} TFLOP/s" if peaks else "unknown for this chip") + "\n")
    print(tabulate(gemm_rows(args.iters), headers=("M x K x N", "bf16 TFLOP/s", "of peak", "fp8 TFLOP/s",
                                                   "of peak", "fp8/bf16"), tablefmt="github"))
    compile_model = not args.no_compile
    t_bf16 = step_time(False, args.layers, args.tokens, max(5, args.iters // 5), compile_model)
    torch.cuda.empty_cache()
    t_fp8 = step_time(True, args.layers, args.tokens, max(5, args.iters // 5), compile_model)
    print(f"\nModel: {args.layers} Llama-3-8B FFN blocks (4096 -> 14336 -> 4096), {args.tokens} tokens/step, "
          f"AdamW, {'torch.compile' if compile_model else 'eager'}\n")
    print(tabulate([("bf16", f"{1000 * t_bf16:.1f}", "1.00x"),
                    ("torchao float8 tensorwise", f"{1000 * t_fp8:.1f}", f"{t_bf16 / t_fp8:.2f}x")],
                   headers=("model", "step ms", "speed-up"), tablefmt="github"))
    print(f"\nFP8/bf16 step-time ratio: {t_fp8 / t_bf16:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
