#!/usr/bin/env bash
# On a machine with a CUDA GPU and Transformer Engine: the GPU regression suite, the TE matrix and env in one go,
# plus TE's real availability answers next to the doctor's static predictions, summarised in one JSON file.
#
#   lab/te/gpu_check.sh [OUT_DIR]        (default: reports/gpu_check; env GPU_CHECK_WORKERS, GPU_CHECK_STEPS)
#
# Exit status: 0 when pytest, the matrix and every prediction agree; 1 otherwise. Runs on CPU too (everything is
# then skipped with the doctor's reasons), which is how it is tested here.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${1:-reports/gpu_check}
mkdir -p "$out"
py=${PYTHON:-python}

$py -m pytest -m gpu -p no:cacheprovider -q --junitxml="$out/pytest_gpu.xml" >"$out/pytest_gpu.log" 2>&1
echo $? >"$out/pytest_gpu.rc"
$py -m fp8doctor matrix --backend te --workers "${GPU_CHECK_WORKERS:-1}" --steps "${GPU_CHECK_STEPS:-8}" \
    --out "$out/matrix_te.jsonl" --format json >"$out/matrix_te.json" 2>"$out/matrix_te.log"
echo $? >"$out/matrix_te.rc"
$py -m fp8doctor env --format json >"$out/env.json" 2>"$out/env.log"
echo $? >"$out/env.rc"
$py lab/te/gpu_summary.py "$out"
