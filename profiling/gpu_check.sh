#!/usr/bin/env bash
# The one command for a lent GPU machine (no network; its python3 has numba-cuda, CuPy, torch
# with cuDNN, pytest-timeout and pytest-xdist, but neither nvtx nor conllu). Run from anywhere:
#
#     OUT=/some/dir bash profiling/gpu_check.sh
#
# Stages, in the order a short GPU slot values them, within GPU_CHECK_SECONDS (480 s) in all.
# Each runs under `timeout` (its cap, or what is left of the run's budget, whichever is less),
# in a process group that the timeout ends whole, streams its output into its own log under
# $OUT as it goes, and adds one line to $OUT/summary.txt (ok / FAILED / TIMED OUT / SKIPPED,
# seconds, the stage's verdict):
#   install     gpurnn importable from this checkout, else pip offline (pip --no-index
#               --no-deps -e .), else a source copy (kernels/ inside gpurnn/): the tree that
#               every later stage probes and runs
#   versions    card, driver, library versions; profiling/gpu_probe.py: the CUDA toolkit
#               (CUDA_HOME set for every later stage where it is unset, cuda-pathfinder finds
#               no libNVVM and a toolkit is found), where Numba found NVVM and libdevice, one
#               tiny kernel compiled and run, the CUDA backend's GPU probe
#   smoke       profiling/gpu_smoke.py: each kernel family in a process of its own, one per
#               core at a time, each under its own timeout (a hang loses its family alone)
#   bench       profiling/bench_gpu.py against torch on cuDNN, TF32 off on both sides
#               (recorded), rows by value, gpurnn and torch alternating within each row
#   persistent  profiling/bench_persistent.py: µs per step against persistent_model.py, many
#               launches between one pair of events
#   gputests    the tests that touch the GPU (persistent, paired-cells and CUDA-backend files
#               first), -v, pairwise test matrices, a 60 s per-test timeout by pytest-timeout's
#               thread method (it ends a test blocked in a CUDA call), over several processes
#               (pytest-xdist); not the PTX tests CI runs
#   sanitize    profiling/sanitize.sh: memcheck, then racecheck, on the persistent smoke families
#   rest        the rest of the suite on the GPU (full matrices), with the time left
# The GPU stages (all after versions) are SKIPPED, each with one summary line saying why, where
# the versions stage found that kernels do not compile (e.g. no libNVVM) or no usable GPU.
# $OUT gets 8 files: summary.txt versions.log smoke.log bench.log bench_gpu.jsonl
# persistent.log tests.log sanitize.log. Scratch ($GPU_CHECK_SCRATCH, a new temporary folder by
# default): Numba's kernel cache (NUMBA_CACHE_DIR: each kernel compiled once for all stages and
# processes), the probe's answers, the sanitizers' per-tool logs, a source copy if pip cannot
# install. Warnings are not errors here (-W default): the GPU run reports them instead of
# failing on them. GPU_CHECK_STAGES="smoke bench" runs only those stages (a rerun after a fix;
# the first GPU stage then probes itself, but only install installs gpurnn: keep it on a fresh
# machine); GPU_CHECK_SMOKE="block coop" only those smoke families, GPU_CHECK_SMOKE_TIMEOUT
# seconds each (default: the stage's cap less 10).
# GPU_CHECK_SIMULATE (comma-separated, for the dry run tests/test_gpu_check.py only) fakes a
# failure: `pip-fails`, `nvvm-missing` (gpu_probe.py), `hang:FAMILY` (gpu_smoke.py), or a
# usable GPU: `gpu`.
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
OUT=${OUT:-$(mktemp -d)}
SCRATCH=${GPU_CHECK_SCRATCH:-$(mktemp -d)}
BUDGET=${GPU_CHECK_SECONDS:-480}
STAGES=" ${GPU_CHECK_STAGES:-install versions smoke bench persistent gputests sanitize rest} "
GPU_STAGES=" smoke bench persistent gputests sanitize rest "
GPU_CHECK_SIMULATE=${GPU_CHECK_SIMULATE:-}
CORES=$(nproc 2> /dev/null || echo 2)
mkdir -p "$OUT" "$SCRATCH"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
PY=${PYTHON:-python3}
export ROOT OUT SCRATCH PY CORES GPU_CHECK_SIMULATE PYTHONUNBUFFERED=1 NUMBA_CACHE_DIR="$SCRATCH/numba_cache"
export NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS=0

stage() {   # stage NAME CAP LOG: function NAME under timeout, appending to $OUT/LOG, one summary line
    local name=$1 cap=$2 log="$OUT/$3"
    local left=$((BUDGET - SECONDS)) limit start first rc state verdict blocked
    [[ $STAGES == *" $name "* ]] || return 0
    limit=$((cap < left ? cap : left))
    if [ "$limit" -lt 5 ]; then
        echo "$name: SKIPPED (the run's ${BUDGET} s are spent)" | tee -a "$SUMMARY"
        return
    fi
    touch "$log"
    if [[ $GPU_STAGES == *" $name "* ]]; then
        probed
        blocked=$(cat "$SCRATCH/blocked")
        if [ -n "$blocked" ]; then
            echo "=== $name: SKIPPED ($blocked)" >> "$log"
            echo "$name: SKIPPED ($blocked)" | tee -a "$SUMMARY"
            return
        fi
    fi
    first=$(($(wc -l < "$log") + 1))
    echo "=== $name (limit ${limit} s, $(date -u +%H:%M:%S) UTC)" | tee -a "$log"
    start=$SECONDS
    STAGE_LIMIT=$limit timeout --kill-after=5 "$limit" bash -c "$name" >> "$log" 2>&1
    rc=$?
    case $rc in
        0) state=ok ;;
        124 | 137) state="TIMED OUT" ;;
        *) state="FAILED rc=$rc" ;;
    esac
    verdict=$(tail -n "+$first" "$log" | grep -a '^verdict: ' | tail -n 1 | cut -c 10-)
    if [ -z "$verdict" ]; then   # cut short: count what it finished (pytest -v lines, smoke families)
        verdict=$(tail -n "+$first" "$log" | grep -aoE ' (PASSED|FAILED|ERROR|SKIPPED)|^[a-z-]+: (ok|FAILED|TIMED OUT)' |
            sed -E 's/^[a-z-]+: (ok|FAILED|TIMED OUT)/families \1/' | sort | uniq -c |
            awk '{$1 = $1; printf "%s%s", sep, $0; sep = ", "}')
    fi
    echo "$name: $state ($((SECONDS - start)) s)${verdict:+; $verdict}" | tee -a "$SUMMARY"
    tail -n 15 "$log"
}

probe() {   # profiling/gpu_probe.py in the tree the stages run: $SCRATCH/cuda_env, $SCRATCH/blocked
    echo "the GPU probe did not finish (see versions.log)" > "$SCRATCH/blocked"
    : > "$SCRATCH/cuda_env"
    "$PY" profiling/gpu_probe.py --env "$SCRATCH/cuda_env" --blocked "$SCRATCH/blocked"
}

probed() {   # the probe's answers in this shell (probed here when the versions stage did not run)
    [ -e "$SCRATCH/blocked" ] || timeout --kill-after=5 60 bash -c probe >> "$OUT/versions.log" 2>&1
    # shellcheck disable=SC1091
    . "$SCRATCH/cuda_env"
}

install() {   # never the network: importable as it is, else pip offline, else a source copy
    importable && { echo "verdict: gpurnn importable from $PWD"; return 0; }
    if [[ ,$GPU_CHECK_SIMULATE, == *,pip-fails,* ]]; then
        echo "pip: failing (GPU_CHECK_SIMULATE=pip-fails)"
    else
        timeout $((STAGE_LIMIT - 10)) "$PY" -m pip install --no-index --no-deps --no-build-isolation -q -e . 2>&1 |
            tail -n 5
        importable && { echo "verdict: gpurnn installed offline (pip -e)"; return 0; }
    fi
    local tree="$SCRATCH/src"
    rm -rf "$tree" && mkdir -p "$tree" && cp -r gpurnn tests profiling pyproject.toml "$tree/" &&
        cp -r kernels "$tree/gpurnn/kernels" || return 1
    echo "$tree" > "$SCRATCH/workdir"
    echo "verdict: pip could not install gpurnn: every later stage runs in a source copy at $tree"
}

importable() {   # gpurnn (with gpurnn.kernels) imports from this tree, from here and from /
    local where here=$PWD
    for where in "$here" /; do
        (cd "$where" && "$PY" -c "import gpurnn.kernels, gpurnn, os, sys
sys.exit(os.path.dirname(os.path.dirname(os.path.abspath(gpurnn.__file__))) != sys.argv[1])" "$here") 2> /dev/null ||
            return 1
    done
}

versions() {
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv || true
    nvidia-smi | head -n 4 || true
    command -v nvcc > /dev/null && nvcc --version | tail -n 2
    command -v compute-sanitizer > /dev/null && compute-sanitizer --version | tail -n 1
    echo "CUDA_HOME=${CUDA_HOME:-unset}, $CORES cores"
    probe   # first: the later stages need its answers more than the versions below
    "$PY" - <<'PYEOF'
import importlib, platform
print("python", platform.python_version())
for name in ("numpy", "numba", "numba_cuda", "cuda.core", "cuda.pathfinder", "cupy", "torch", "scipy", "pytest",
             "pytest_timeout", "xdist", "setuptools", "typer", "tqdm", "safetensors", "threadpoolctl", "matplotlib",
             "conllu", "nvtx"):
    try:
        module = importlib.import_module(name)
        print(f"{name:16s} {getattr(module, '__version__', '?')}")
    except Exception as error:
        print(f"{name:16s} MISSING ({type(error).__name__})")
try:
    import cupy, torch
    print("cuda runtime", cupy.cuda.runtime.runtimeGetVersion(), "driver", cupy.cuda.runtime.driverGetVersion())
    print("torch cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())
except Exception as error:
    print("versions:", type(error).__name__, error)
PYEOF
}

smoke() {   # one process per family, as many at once as cores, each family's cap inside the stage's
    # shellcheck disable=SC2086  # GPU_CHECK_SMOKE: family names, meant to split
    "$PY" profiling/gpu_smoke.py --jobs "$CORES" --timeout "${GPU_CHECK_SMOKE_TIMEOUT:-$((STAGE_LIMIT - 10))}" \
        ${GPU_CHECK_SMOKE:-}
}

test_flags() {   # a per-test timeout that ends a test blocked in a CUDA call; workers where xdist is there
    if "$PY" -c "import pytest_timeout" 2> /dev/null; then
        echo "--timeout=$1 --timeout-method=thread"
    else
        echo "-o faulthandler_timeout=$1"
    fi
    "$PY" -c "import xdist" 2> /dev/null && echo "-n $((CORES > 16 ? 8 : (CORES + 1) / 2))"
}

run_pytest() {   # run_pytest FILE...: -v, warnings reported not raised, PTX tests left to CI
    # shellcheck disable=SC2046  # the flags are meant to split
    GPURNN_TEST_BACKENDS=cuda "$PY" -m pytest -v -p no:cacheprovider -W default --continue-on-collection-errors \
        -k "not ptx" $(test_flags 60) "$@"
}

gpu_first_files() {
    echo tests/test_persistent.py tests/test_persistent_fallback.py tests/test_cells.py tests/test_cuda_backend.py
    find tests -name 'test_*.py' | sort | grep -vE 'test_(persistent|persistent_fallback|cells|cuda_backend|ptx)\.py'
}

gputests() {
    # shellcheck disable=SC2046
    GPURNN_GPU_TESTS_ONLY=1 GPURNN_TEST_PAIRWISE=1 run_pytest $(gpu_first_files)
}

bench() {
    "$PY" profiling/bench_gpu.py --jsonl "$OUT/bench_gpu.jsonl"
}

persistent() {
    "$PY" profiling/bench_persistent.py
}

sanitize() {   # the tools one after another, each log streamed here; per-tool logs in the scratch folder
    SANITIZE_LOG_DIR="$SCRATCH/sanitize" SANITIZE_SECONDS=$((STAGE_LIMIT - 5)) bash profiling/sanitize.sh
}

rest() {   # the full test matrices, files the gputests stage did not reach first
    # shellcheck disable=SC2046
    run_pytest $(gpu_first_files | tac)
}

export -f probe install importable versions smoke test_flags run_pytest gpu_first_files gputests bench persistent \
    sanitize rest
stage install 60 versions.log
if [ -s "$SCRATCH/workdir" ]; then   # the source copy: every later stage probes and runs it
    cd "$(cat "$SCRATCH/workdir")" || exit 1
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
stage versions 60 versions.log
stage smoke 150 smoke.log
stage bench 90 bench.log
stage persistent 60 persistent.log
stage gputests 120 tests.log
stage sanitize 90 sanitize.log
stage rest 600 tests.log
echo "=== summary ($SECONDS s; files in $OUT)"
cat "$SUMMARY"
