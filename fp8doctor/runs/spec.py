"""What one short run is (RunSpec) and what it returns (the result dict's keys, documented here).

A result is a plain JSON object so it survives a child process, a JSON-lines file and a report unchanged:

  spec            RunSpec.to_dict()
  outcome         "finished" | "raised" | "crashed" | "timed_out" | "skipped"
  error           {"type", "message", "where"} when raised; {"signal"} when crashed; null otherwise.
                  "where" is the innermost accelerate/transformers/torchao/TE frame ("path:line in func");
                  raised errors add "user_where" (innermost frame outside site-packages) and "traceback_tail";
                  a crash without a signal adds "exit_code"; a failed rank adds "rank"
  skip_reason     sentence when skipped (the capability check's reason)
  accelerator     {"mixed_precision", "fp8_enabled", "fp8_backend", "distributed_type", "num_processes"}
                  as Accelerate saw them (null for entries without an Accelerator)
  fp8_layers      names of FP8 modules after preparation
  eligible_layers names of Linear layers the backend's filter would convert (fp8doctor.observe)
  forwards        fp8doctor.observe.FP8ForwardCounter.to_dict()
  fp8_active      bool: FP8 modules ran forward (and TE ran inside FP8 autocast)
  losses          per-step loss (floats; NaN/inf kept as strings "nan"/"inf")
  grad_norms      per-step L2 norm of the gradients before the optimizer step (fp8doctor.numerics.grad_norm; the
                  Trainer entry: the pre-clipping norm the Trainer logs), same encoding as losses
  numerics        spec.numerics_every > 0, FP8 cell, eager: {"every", "layers", "unsampled"} from fp8doctor.numerics's
                  sampler
  checkpoint      FP8 cells of the accelerator, multiproc and launch entries: the trained model's state dict saved
                  (torch.save) and loaded (torch.load's default) into the model built without FP8: {"bytes",
                  "missing", "missing_count", "unexpected", "unexpected_count", "compared", "max_abs_diff" (a
                  float, or "nan"/"inf")}; "save_error" / "load_error" / "compare_error" where that step
                  failed; or {"skipped"} (runs/entries/checkpoint.py)
  step_times_s    per-step wall time
  tokens_per_s    mean over steps after the first
  peak_mem_bytes  peak RSS (CPU) or torch.cuda.max_memory_allocated (GPU)
  device          "cpu" | "cuda:N" (+ name)
  emulated        true when torchao ran with Float8LinearConfig(emulate=True) (CPU)
  timings_s       {"imports", "model_build", "prepare", "steps", "total"}
  ranks           for nproc > 1: one result per rank (same keys), rank 0's copied to the top level
  notes           free sentences (e.g. "torchao emulate=True: real FP8 casts, plain matmul")
  versions        {"torch", "accelerate", "transformers", "torchao", "transformer_engine"}
Added by the engine (fp8doctor.runs; absent from results made elsewhere):
  eligibility_rule  the fp8doctor.observe rule behind eligible_layers
  env             {"removed_from_caller": the caller's FP8-relevant variables, recorded and not inherited,
                   "applied": spec.env} (redacted)
  wall_s, returncode, stderr_tail   the child process as the pool saw it (stderr_tail only when not finished)
  patch           buggy entries: {"form", "calls", "injected", "kwargs_handlers_seen", "mixed_precision_arg"}
  training_args   trainer entries: {"bf16", "mixed_precision"} as TrainingArguments resolved them
  entry_env       variables the entry set the way a user would (e.g. ACCELERATE_MIXED_PRECISION=fp8)
  launcher        launch/multiproc: {"command", "launcher_env", "returncode", "processes_started"}
  accelerate_config, accelerate_config_file   launch: the config the launcher read
  rank            inside "ranks": the process's rank
  wrapper         fsdp2/deepspeed: {"plugin", "distributed_type_seen", "state_forced", "wrapped_modules",
                  "fp8_layers_wrapped", "float8_all_gather"}: the plugin, what Accelerate's state said before the
                  entry acted, the sharded modules and the FP8 layers inside them (see runs/entries/plugins.py)
  compiled        {"backend"} when spec.compile: the torch.compile backend the prepared model ran under
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

BACKENDS = ("torchao", "te", "none")
TORCHAO_RECIPES = ("tensorwise", "rowwise", "rowwise_with_gw_hp")
TE_RECIPES = ("delayed_hybrid", "delayed_e4m3", "current", "block", "mxfp8", "nvfp4")
BASELINE_RECIPE = "bf16"
# Entry paths: real ways users switch FP8 on (and the reference report's buggy ways).
ENTRIES = ("native", "accelerator", "trainer", "launch", "multiproc", "fsdp2", "deepspeed")
# Entries that shard the model under an Accelerate plugin (FSDP2, DeepSpeed ZeRO); they always start 2+ ranks.
SHARDED_ENTRIES = ("fsdp2", "deepspeed")
BUGGY_ENTRIES = ("buggy_patch_if_missing", "buggy_patch_append")
OUTCOMES = ("finished", "raised", "crashed", "timed_out", "skipped")
SIZES = ("tiny", "small", "medium")


@dataclass
class RunSpec:
    backend: str = "torchao"
    recipe: str = "tensorwise"
    entry: str = "accelerator"
    mixed_precision: str = "fp8"
    env: dict[str, str] = field(default_factory=dict)
    steps: int = 8
    seed: int = 0
    nproc: int = 1
    size: str = "tiny"
    timeout_s: float = 180.0
    config_file: str | None = None
    bf16: bool = False  # TrainingArguments(bf16=...) / the reference report's `bf16: true`
    device: str | None = None  # None: cuda:0 when a GPU is visible, else cpu
    compile: bool = False  # torch.compile of the prepared (FP8) model
    numerics_every: int = 0  # sample each FP8 layer's numerics every K forward calls (0: off)

    def validate(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; choose from {', '.join(BACKENDS)}")
        recipes = {"torchao": TORCHAO_RECIPES, "te": TE_RECIPES, "none": (BASELINE_RECIPE,)}[self.backend]
        if self.recipe not in recipes:
            raise ValueError(f"unknown recipe {self.recipe!r} for {self.backend}; choose from {', '.join(recipes)}")
        if self.entry not in ENTRIES + BUGGY_ENTRIES:
            raise ValueError(f"unknown entry {self.entry!r}; choose from {', '.join(ENTRIES + BUGGY_ENTRIES)}")
        if self.size not in SIZES:
            raise ValueError(f"unknown size {self.size!r}; choose from {', '.join(SIZES)}")
        if self.steps < 1 or self.nproc < 1 or self.numerics_every < 0:
            raise ValueError("steps and nproc must be at least 1, numerics_every at least 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunSpec:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)

    def key(self) -> str:
        """Stable identity of a cell, used by the matrix's JSON lines and --resume."""
        d = self.to_dict()
        d.pop("timeout_s", None)
        d.pop("numerics_every", None)  # the sampler only reads: the same training with or without it
        if not d.get("compile"):
            d.pop("compile", None)  # keys of eager cells stay those recorded before the compile axis existed
        blob = json.dumps(d, sort_keys=True)
        return f"{self.backend}/{self.recipe}/{self.entry}/s{self.seed}-" + hashlib.sha1(blob.encode()).hexdigest()[:8]

    def entry_label(self) -> str:
        """The entry path as the tables show it: ranks and the compile axis included."""
        return (self.entry + (f" x{self.nproc}" if self.nproc > 1 else "")
                + (" +compile" if self.compile else ""))

    def label(self) -> str:
        return f"{self.backend}:{self.recipe} via {self.entry}" + (" +compile" if self.compile else "")
