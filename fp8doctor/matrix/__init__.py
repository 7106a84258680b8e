"""`fp8doctor matrix`: short FP8 runs over backend x recipe x entry path, each checked against a bf16 baseline.

plan (which cells) -> run (isolated runs, JSON lines as they finish) -> checks (verdicts on result dicts) -> render.
Importing this package is cheap: torch is only imported in the child processes that train.
"""
