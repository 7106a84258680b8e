"""Mutation score of the fast, non-live tests over fp8doctor/knowledge/ (mutmut 3, configured in pyproject.toml).

mutmut runs on a temporary copy of the tree (the files git tracks or would track), so its mutants/ folder and
caches never land in the worktree; the copy is removed at the end. All mutants are generated, then an evenly
spread, deterministic sample of --max-mutants (default 150) is tested, or every one with --all. Progress goes to
stderr, a JSON summary (counts, seconds, load average, survivors with their diffs) is written atomically, and the
last line is `mutation score: K of N killed` (K counts "killed" only: a timeout, a mutant no selected test
reaches, a suspicious result are not kills). docs/mutation.md lists the equivalent survivors.

    python benchmarks/mutation.py [--max-mutants 150 | --all] [--paths 'fp8doctor/knowledge/predict.py'] [--json PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PATHS = ["fp8doctor/knowledge/*"]
DEFAULT_SAMPLE = 150  # about 15 minutes on 2 loaded cores; all ~3200 mutants take hours (docs/mutation.md)
POLL_S = 10.0
# Generates the mutants (only) in the copy; mutmut's `run` then finds them generated and tests the names given.
GENERATE = (
    "from mutmut.__main__ import copy_also_copy_files, copy_src_dir, create_mutants, set_mutant_under_test\n"
    "set_mutant_under_test('mutant_generation')\n"
    "import os; os.makedirs('mutants', exist_ok=True)\n"
    "copy_src_dir(); copy_also_copy_files(); create_mutants(int(os.environ['MUTATION_CHILDREN']))\n"
)


class UsageError(Exception):
    """Bad input: one line and exit 2."""


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def check_paths(paths: list[str]) -> list[str]:
    """Each glob must name .py files under fp8doctor/ (mutmut's only_mutate patterns, relative to the repo)."""
    for pattern in paths:
        if not (pattern.startswith("fp8doctor/") and (pattern.endswith(".py") or pattern.endswith("*"))):
            raise UsageError(f"--paths {pattern!r}: expected a glob under fp8doctor/ ending in .py or *")
        if not any(p.suffix == ".py" for p in ROOT.glob(pattern)):
            raise UsageError(f"--paths {pattern!r}: matches no .py file")
    return paths


def copy_tree(dest: Path) -> None:
    """The files git tracks or would track (not .venv, not ignored outputs), copied into dest."""
    proc = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                          timeout=60)
    if proc.returncode != 0:
        raise UsageError(f"git ls-files failed in {ROOT}: {proc.stderr.decode(errors='replace').strip()[:200]}")
    for name in filter(None, proc.stdout.decode().split("\0")):
        src = ROOT / name
        if src.is_file() and not src.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def set_only_mutate(pyproject: Path, paths: list[str]) -> None:
    text, n = re.subn(r"^only_mutate = .*$", lambda _m: f"only_mutate = {json.dumps(paths)}",
                      pyproject.read_text(), count=1, flags=re.M)
    if n != 1:
        raise UsageError("pyproject.toml has no [tool.mutmut] only_mutate line")
    pyproject.write_text(text)


def exit_codes(work: Path) -> dict[str, int | None]:
    """mutant name -> mutmut's exit code (None: not tested yet), from the .meta files mutmut keeps per source file."""
    codes: dict[str, int | None] = {}
    for meta in sorted((work / "mutants" / "fp8doctor").rglob("*.py.meta")):
        try:
            codes.update(json.loads(meta.read_text())["exit_code_by_key"])
        except (OSError, ValueError, KeyError):
            continue  # being rewritten by mutmut right now; the next poll reads it
    return codes


def tally(codes: dict[str, int | None], names: list[str]) -> dict[str, int]:
    from mutmut.stats import status_by_exit_code

    counts: dict[str, int] = {}
    for name in names:
        status = status_by_exit_code[codes.get(name)]
        counts[status] = counts.get(status, 0) + 1
    return counts


def run_mutmut(work: Path, names: list[str], children: int, started: float, env: dict[str, str]) -> int:
    """`mutmut run` in the copy, its output to a log there; a progress line on stderr every POLL_S seconds."""
    cmd = [sys.executable, "-m", "mutmut", "run", "--max-children", str(children), *names]
    with open(work / "mutmut.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while proc.poll() is None:
                time.sleep(POLL_S)
                counts = tally(exit_codes(work), names)
                done = len(names) - counts.get("not checked", 0)
                print(f"mutation: {done}/{len(names)} tested, {counts.get('killed', 0)} killed, "
                      f"{counts.get('survived', 0)} survived, {time.monotonic() - started:.0f} s", file=sys.stderr)
        except KeyboardInterrupt:
            os.killpg(proc.pid, 15)
            proc.wait()
            raise
    return proc.returncode


def sample(names: list[str], limit: int | None) -> list[str]:
    if limit is None or limit >= len(names):
        return names
    return [names[i * len(names) // limit] for i in range(limit)]


def diff_of(work: Path, name: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "mutmut", "show", name], cwd=work, capture_output=True, text=True,
                          timeout=120)
    return proc.stdout


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    started = time.monotonic()
    copy_tree(work)
    set_only_mutate(work / "pyproject.toml", args.paths)
    # One torch thread: mutmut forks per mutant, and a child forked after torch started its intra-op thread pool
    # hangs in its first parallel op (every such mutant would read as a timeout).
    env = {**os.environ, "MUTATION_CHILDREN": str(args.max_children), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    print("mutation: generating mutants", file=sys.stderr)
    gen = subprocess.run([sys.executable, "-c", GENERATE], cwd=work, env=env, capture_output=True, text=True,
                         timeout=1800)
    if gen.returncode != 0:
        raise RuntimeError(f"mutant generation failed: {gen.stderr.strip().splitlines()[-1:]}")
    everything = sorted(exit_codes(work))
    names = sample(everything, args.max_mutants)
    if not names:
        raise UsageError(f"--paths {args.paths}: mutmut made no mutant there")
    print(f"mutation: testing {len(names)} of {len(everything)} mutants", file=sys.stderr)
    rc = run_mutmut(work, names if len(names) < len(everything) else [], args.max_children, started, env)
    codes = exit_codes(work)
    counts = tally(codes, names)
    if rc != 0 or counts.get("not checked"):
        tail = (work / "mutmut.log").read_text(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"mutmut run exited {rc} with {counts.get('not checked', 0)} mutants untested: {tail}")
    from mutmut.stats import status_by_exit_code

    survivors = [n for n in names if status_by_exit_code[codes[n]] != "killed"]
    return {
        "paths": args.paths, "mutants_generated": len(everything), "mutants_tested": len(names),
        "killed": counts.get("killed", 0), "counts": counts,
        "seconds": round(time.monotonic() - started, 1), "max_children": args.max_children,
        "cpus": os.cpu_count(), "loadavg_end": list(os.getloadavg()),
        "not_killed": [{"name": n, "status": status_by_exit_code[codes[n]], "diff": diff_of(work, n)}
                       for n in survivors],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-mutants", type=positive, default=DEFAULT_SAMPLE,
                    help=f"test an evenly spread sample of this many mutants (default {DEFAULT_SAMPLE})")
    ap.add_argument("--all", action="store_true", help="test every mutant (hours on 2 cores: docs/mutation.md)")
    ap.add_argument("--paths", nargs="+", default=DEFAULT_PATHS, metavar="GLOB",
                    help="files to mutate, globs relative to the repo (default: fp8doctor/knowledge/*)")
    ap.add_argument("--max-children", type=positive, default=os.cpu_count() or 2,
                    help="mutants tested at once (default: the CPU count)")
    ap.add_argument("--json", type=Path, default=ROOT / "reports" / "mutation.json",
                    help="summary file, written atomically (default: reports/mutation.json)")
    args = ap.parse_args(argv)
    if args.all:
        args.max_mutants = None
    if importlib.util.find_spec("mutmut") is None:
        print("mutation: mutmut is not installed here; pip install 'mutmut>=3.8,<4' (the test extra)", file=sys.stderr)
        return 2
    load_start = list(os.getloadavg())
    try:
        args.paths = check_paths(args.paths)
        if not args.json.parent.is_dir():
            raise UsageError(f"--json {args.json}: no such folder {args.json.parent}")
        with tempfile.TemporaryDirectory(prefix="fp8doctor-mutation-") as tmp:
            summary = measure(args, Path(tmp))
    except UsageError as exc:
        print(f"mutation: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"mutation: {exc}", file=sys.stderr)
        return 1
    summary["loadavg_start"] = load_start
    from fp8doctor.runs.worker import write_json  # here, so that the mutmut check above needs only the stdlib

    write_json(str(args.json), summary)
    for row in summary["not_killed"]:
        print(f"{row['status']}: {row['name']}")
    print(f"{summary['seconds']} s, {summary['max_children']} children, load average {load_start[0]:.1f} at start, "
          f"summary in {args.json}")
    print(f"mutation score: {summary['killed']} of {summary['mutants_tested']} killed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
