"""`fp8doctor repro`: run the reference report's buggy paths and the fixed paths in child processes, classify
each run, and say which fix worked on this machine.

plan (configs + machine -> rows of RunSpecs) -> run (fp8doctor.runs.pool) -> verdicts (the paragraph and the fix
that worked) -> render (text / md / json, redacted once).
"""

from __future__ import annotations

from fp8doctor.repro.plan import Plan, Row, UserConfigs, build_plan, load_user_configs
from fp8doctor.repro.render import render, title, to_json_obj
from fp8doctor.repro.run import ReproReport, run_repro

__all__ = ["Plan", "ReproReport", "Row", "UserConfigs", "build_plan", "load_user_configs", "render", "run_repro",
           "title", "to_json_obj"]
