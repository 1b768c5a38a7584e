#!/usr/bin/env bash
# The one command for a lent GPU machine (no network; its python3 has numba, numba-cuda, CuPy
# and torch with cuDNN, but neither nvtx nor conllu). Run from anywhere:
#
#     OUT=/some/dir bash profiling/gpu_check.sh
#
# Stages, in the order a short GPU slot values them. Each runs under `timeout` (its cap, or
# what is left of the whole run's GPU_CHECK_SECONDS = 350 s, whichever is less), streams its
# output into its own log under $OUT as it goes, and adds one line to $OUT/summary.txt
# (ok / FAILED / TIMED OUT, seconds, the stage's verdict):
#   versions    card, driver, `numba -s` essentials, library versions, cuda.detect(); gpurnn
#               installed offline (pip --no-index --no-deps -e .) or run from a source copy
#   smoke       profiling/gpu_smoke.py: every kernel family once, checked against the CPU
#               (`cells`: a layer's two directions in one launch, after `coop`)
#   gputests    the tests that touch the GPU (persistent, paired-cells and CUDA-backend files first), -v,
#               a 60 s per-test timeout, pairwise test matrices; not the PTX tests CI runs
#   bench       profiling/bench_gpu.py against torch, TF32 off on both sides, a JSON row per row
#   persistent  profiling/bench_persistent.py: µs per step against persistent_model.py
#   sanitize    profiling/sanitize.sh: memcheck (half the stage), then racecheck, then
#               synccheck (a quarter each), streamed
#   rest        the rest of the suite on the GPU (full matrices), with the time left
# $OUT gets 8 files: summary.txt versions.log smoke.log tests.log bench.log bench_gpu.jsonl
# persistent.log sanitize.log. Scratch (the sanitizers' per-tool logs, Numba's kernel cache so
# the `cache=True` kernels compile once for all stages, a source copy if pip cannot install):
# $GPU_CHECK_SCRATCH, a new temporary folder by default. Warnings are not errors here (-W
# default): the GPU run reports them instead of failing on them. GPU_CHECK_STAGES="smoke bench"
# runs only those stages (a rerun after a fix; without the versions stage the first GPU stage
# probes the GPU itself, but only versions installs gpurnn: keep it on a fresh machine).
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
OUT=${OUT:-$(mktemp -d)}
SCRATCH=${GPU_CHECK_SCRATCH:-$(mktemp -d)}
BUDGET=${GPU_CHECK_SECONDS:-350}
STAGES=" ${GPU_CHECK_STAGES:-versions smoke gputests bench persistent sanitize rest} "
mkdir -p "$OUT" "$SCRATCH"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
PY=${PYTHON:-python3}
export ROOT OUT SCRATCH PY PYTHONUNBUFFERED=1 NUMBA_CACHE_DIR="$SCRATCH/numba_cache"
export NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS=0

stage() {   # stage NAME CAP LOG: function NAME under timeout, appending to $OUT/LOG, one summary line
    local name=$1 cap=$2 log="$OUT/$3"
    local left=$((BUDGET - SECONDS)) limit start first rc state verdict
    [[ $STAGES == *" $name "* ]] || return 0
    limit=$((cap < left ? cap : left))
    if [ "$limit" -lt 5 ]; then
        echo "$name: SKIPPED (the run's ${BUDGET} s are spent)" | tee -a "$SUMMARY"
        return
    fi
    touch "$log"
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
        verdict=$(tail -n "+$first" "$log" | grep -aoE ' (PASSED|FAILED|ERROR|SKIPPED)|^[a-z-]+: (ok|FAILED) \(' |
            sed -E 's/^[a-z-]+: (ok|FAILED) \(/families \1/' | sort | uniq -c |
            awk '{printf "%s%s %s", sep, $1, $2 ($3 ? " " $3 : ""); sep=", "}')
    fi
    echo "$name: $state ($((SECONDS - start)) s)${verdict:+; $verdict}" | tee -a "$SUMMARY"
    tail -n 15 "$log"
}

probe_gpu() {   # $SCRATCH/gpu_ok where the CUDA backend sees a real GPU; $SCRATCH/probed either way
    "$PY" -c "import gpurnn.backends.cuda as c; ok = c.gpu_present()
print('CUDA backend usable:', c.cuda_available(), 'real GPU:', ok); raise SystemExit(0 if ok else 1)" &&
        touch "$SCRATCH/gpu_ok"
    touch "$SCRATCH/probed"
}

need_gpu() {   # inside a stage: end it at once without a usable GPU (probed here when versions did not run)
    [ -e "$SCRATCH/probed" ] || probe_gpu > /dev/null 2>&1
    [ -e "$SCRATCH/gpu_ok" ] && return 0
    echo "verdict: not run: no usable GPU (see versions.log)"
    exit 3
}

versions() {
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv || true
    nvidia-smi | head -n 4 || true
    command -v nvcc > /dev/null && nvcc --version | tail -n 2
    command -v compute-sanitizer > /dev/null && compute-sanitizer --version | tail -n 1
    "$PY" -m numba -s 2>&1 |
        grep -aiE "numba version|python version|cuda|nvvm|libdevice|cudadevrt|nvjitlink|binding|driver" | head -n 40
    "$PY" - <<'PYEOF'
import importlib, platform
print("python", platform.python_version())
for name in ("numpy", "numba", "numba.cuda", "cupy", "torch", "scipy", "pytest", "pytest_timeout", "setuptools",
             "typer", "tqdm", "safetensors", "threadpoolctl", "matplotlib", "conllu", "nvtx"):
    try:
        module = importlib.import_module(name)
        print(f"{name:14s} {getattr(module, '__version__', '?')}")
    except Exception as error:
        print(f"{name:14s} MISSING ({type(error).__name__})")
try:
    import numba_cuda
    print(f"{'numba_cuda':14s} {numba_cuda.__version__}")
    import cupy, torch
    print("cuda runtime", cupy.cuda.runtime.runtimeGetVersion(), "driver", cupy.cuda.runtime.driverGetVersion())
    print("torch cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())
except Exception as error:
    print("versions:", type(error).__name__, error)
try:
    from numba import cuda
    cuda.detect()
except Exception as error:
    print("cuda.detect():", type(error).__name__, " ".join(str(error).split()))
PYEOF
    install_gpurnn || return 1
    probe_gpu
    [ -e "$SCRATCH/gpu_ok" ] && echo "verdict: GPU usable" || echo "verdict: no usable GPU: later stages end at once"
}

importable() {   # gpurnn (with gpurnn.kernels) imports from this checkout, from here and from /
    local where here=$PWD
    for where in "$here" /; do
        (cd "$where" && "$PY" -c "import gpurnn.kernels, gpurnn, os, sys
sys.exit(os.path.dirname(os.path.dirname(os.path.abspath(gpurnn.__file__))) != sys.argv[1])" "$here") 2> /dev/null ||
            return 1
    done
}

install_gpurnn() {   # never the network: pip offline, else a copy of the tree with kernels/ inside gpurnn/
    importable && { echo "gpurnn: importable from $PWD"; return 0; }
    timeout 30 "$PY" -m pip install --no-index --no-deps --no-build-isolation -q -e . 2>&1 | tail -n 5
    importable && { echo "gpurnn: installed offline (pip -e)"; return 0; }
    local tree="$SCRATCH/src"
    rm -rf "$tree" && mkdir -p "$tree" && cp -r gpurnn tests profiling pyproject.toml "$tree/" &&
        cp -r kernels "$tree/gpurnn/kernels" || return 1
    echo "$tree" > "$SCRATCH/workdir"
    echo "gpurnn: pip could not install it; the later stages run in a source copy at $tree"
}

smoke() {
    need_gpu
    "$PY" profiling/gpu_smoke.py
}

test_timeout_flags() {   # a per-test timeout: pytest-timeout where installed, else faulthandler's stack dump
    if "$PY" -c "import pytest_timeout" 2> /dev/null; then
        echo "--timeout=$1"
    else
        echo "-o faulthandler_timeout=$1"
    fi
}

run_pytest() {   # run_pytest FILE...: -v, warnings reported not raised, PTX tests left to CI
    # shellcheck disable=SC2046  # the flags are meant to split
    GPURNN_TEST_BACKENDS=cuda "$PY" -m pytest -v -p no:cacheprovider -W default --continue-on-collection-errors \
        -k "not ptx" $(test_timeout_flags 60) "$@"
}

gpu_first_files() {
    echo tests/test_persistent.py tests/test_persistent_fallback.py tests/test_cells.py tests/test_cuda_backend.py
    find tests -name 'test_*.py' | sort | grep -vE 'test_(persistent|persistent_fallback|cells|cuda_backend|ptx)\.py'
}

gputests() {
    need_gpu
    # shellcheck disable=SC2046
    GPURNN_GPU_TESTS_ONLY=1 GPURNN_TEST_PAIRWISE=1 run_pytest $(gpu_first_files)
}

bench() {
    need_gpu
    "$PY" profiling/bench_gpu.py --jsonl "$OUT/bench_gpu.jsonl"
}

persistent() {
    need_gpu
    "$PY" profiling/bench_persistent.py
}

sanitize() {   # tools one after another, each log streamed here; per-tool logs in the scratch folder
    need_gpu
    SANITIZE_LOG_DIR="$SCRATCH/sanitize" SANITIZE_SECONDS=$((STAGE_LIMIT - 8)) bash profiling/sanitize.sh
}

rest() {   # the full test matrices, files the gputests stage did not reach first
    need_gpu
    # shellcheck disable=SC2046
    run_pytest $(gpu_first_files | tac)
}

export -f probe_gpu need_gpu versions importable install_gpurnn smoke test_timeout_flags run_pytest gpu_first_files gputests \
    bench persistent sanitize rest
stage versions 40 versions.log
if [ -s "$SCRATCH/workdir" ]; then
    cd "$(cat "$SCRATCH/workdir")" || exit 1
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
stage smoke 70 smoke.log
stage gputests 80 tests.log
stage bench 70 bench.log
stage persistent 40 persistent.log
stage sanitize 80 sanitize.log
stage rest 600 tests.log
echo "=== summary ($SECONDS s; files in $OUT)"
cat "$SUMMARY"
