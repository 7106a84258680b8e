"""fp8doctor: diagnose and reproduce FP8 training problems (Accelerate, Transformer Engine, torchao)."""

__version__ = "0.1.0"
SCHEMA_VERSION = 1
