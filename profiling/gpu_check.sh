#!/usr/bin/env bash
# The one command for a lent GPU machine (no network; python3 there has numba, numba-cuda,
# CuPy and torch with cuDNN). Run from anywhere:
#
#     OUT=/some/dir bash profiling/gpu_check.sh
#
# Stages, each under its own `timeout` so the whole run stays under 6 minutes (350 s of limits):
#   versions  card, driver, CUDA and library versions, numba's view of the device   (20 s)
#   install   pip install --no-deps --no-build-isolation -e . (offline); wheels from
#             ./wheels (a carried wheelhouse of pure-Python deps) when present       (40 s)
#   bench     profiling/gemm/harness.py (Numba GEMM versions vs cuBLAS), then
#             profiling/bench_gpu.py (gpurnn vs torch.nn.RNN on cuDNN)              (110 s)
#   tests     the whole suite with the CUDA backend (GPURNN_TEST_BACKENDS=cuda: the CPU
#             backend's copy of the parametrized tests runs in CI, and both do not fit
#             the time), the `cuda`-marked realistic sizes, the PTX checks          (150 s)
#   sanitize  profiling/sanitize.sh (compute-sanitizer), when present              (30 s)
# Writes at most 8 flat files under $OUT: versions.log install.log bench.log bench_gpu.json
# tests.log tests.xml sanitize.log summary.txt; prints each stage's tail and the summary.
set -u
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
PY=${PYTHON:-python3}
export OUT PY PYTHONUNBUFFERED=1

stage() {   # stage NAME SECONDS: run function NAME under timeout, log to $OUT/NAME.log, record rc and time
    local name=$1 limit=$2
    local start=$SECONDS
    echo "=== $name (limit ${limit}s)"
    timeout --kill-after=5 "$limit" bash -c "$name" > "$OUT/$name.log" 2>&1
    local rc=$?
    tail -n 30 "$OUT/$name.log"
    echo "$name: rc=$rc ($((SECONDS - start)) s)$([ "$rc" = 124 ] && echo ' TIMED OUT')" | tee -a "$SUMMARY"
}

versions() {
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv || true
    nvidia-smi | head -n 4 || true
    command -v nvcc > /dev/null && nvcc --version | tail -n 2
    "$PY" - <<'PYEOF'
import importlib, platform
print("python", platform.python_version())
for name in ("numpy", "numba", "numba_cuda", "cupy", "torch", "scipy", "pytest", "setuptools", "wheel", "typer", "tqdm",
             "safetensors", "conllu", "nvtx", "matplotlib"):
    try:
        module = importlib.import_module(name)
        print(f"{name:12s} {getattr(module, '__version__', '?')}")
    except Exception as error:
        print(f"{name:12s} MISSING ({type(error).__name__})")
import cupy, torch
from numba import cuda
print("cuda runtime", cupy.cuda.runtime.runtimeGetVersion(), "driver", cupy.cuda.runtime.driverGetVersion())
print("torch cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())
cuda.detect()
PYEOF
}

install() {
    if [ -d wheels ]; then
        "$PY" -m pip install --no-index --find-links wheels wheels/*.whl || echo "wheelhouse install failed"
    fi
    "$PY" -m pip install --no-deps --no-build-isolation -e . &&
        "$PY" -c "import gpurnn.backends.cuda as c; print('CUDA backend usable:', c.cuda_available(), 'real GPU:', c.gpu_present())"
}

tests() {   # collection errors (a library missing on this image) must not hide the rest
    GPURNN_TEST_BACKENDS=cuda "$PY" -m pytest -q tests -p no:cacheprovider --continue-on-collection-errors \
        --durations=10 --junitxml="$OUT/tests.xml" -o junit_family=xunit2
}

bench() {
    "$PY" profiling/gemm/harness.py --repeats 5
    "$PY" profiling/bench_gpu.py --out "$OUT/bench_gpu.json"
}

sanitize() {   # its files go to a scratch folder and are appended here: $OUT stays at 8 files
    local script scratch
    scratch=$(mktemp -d)
    for script in profiling/*sanitize*.sh; do
        [ -e "$script" ] || { echo "no sanitizer script in profiling/"; return 0; }
        OUT="$scratch" bash "$script"
    done
    tail -n +1 "$scratch"/* 2> /dev/null
}

source_tree() {   # no install possible (e.g. setuptools without bdist_wheel): the installed layout, copied
    local tree
    tree=$(mktemp -d)
    cp -r gpurnn "$tree/gpurnn" && cp -r kernels "$tree/gpurnn/kernels" && echo "$tree"
}

export -f versions install tests bench sanitize
stage versions 20
stage install 40
if ! "$PY" -c "import gpurnn.kernels" 2> /dev/null; then
    PYTHONPATH="$(source_tree)${PYTHONPATH:+:$PYTHONPATH}"
    export PYTHONPATH PYTHONSAFEPATH=1   # 3.11+: `python -m` no longer puts ./gpurnn (no kernels/) first
    echo "install: not importable; running from a copy of the source tree at $PYTHONPATH" | tee -a "$SUMMARY"
fi
stage bench 110
stage tests 150
stage sanitize 30
echo "=== summary ($SECONDS s)"
cat "$SUMMARY"
