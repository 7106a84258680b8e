"""`fp8doctor report`: env + repro + matrix (+ optional watch) in one Markdown file for a bug report, with a
JSON twin and loss-curve plots, everything redacted."""
