#!/usr/bin/env bash
# Nsight Systems timeline of a few gpurnn training steps on the CUDA backend, with the NVTX
# ranges of gpurnn.profiling_ranges (domain "gpurnn": forward, backward, clip, optimizer step).
#
#     OUT=/some/dir bash profiling/nsys_profile.sh [T B d k STEPS]     (defaults 100 32 128 64 5)
#
# Writes $OUT/gpurnn_steps.nsys-rep (open it in the Nsight Systems GUI) and prints the NVTX
# range and kernel summaries (`nsys stats`). Exit status 3, with a message, where `nsys` is not
# installed or does not run (the lent GPU machines have ncu and compute-sanitizer but no
# working nsys on the PATH: use `ncu --nvtx` there instead).
set -u
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-$(mktemp -d)}
PY=${PYTHON:-python3}
if ! command -v nsys > /dev/null 2>&1 || ! nsys --version > /dev/null 2>&1; then
    echo "nsys_profile.sh: Nsight Systems (nsys) is not installed here or does not run; nothing profiled." >&2
    echo "  Install Nsight Systems (https://developer.nvidia.com/nsight-systems), or on a machine with" >&2
    echo "  Nsight Compute: ncu --nvtx --nvtx-include 'gpurnn@' $PY profiling/train_steps.py" >&2
    exit 3
fi
mkdir -p "$OUT"
nsys profile --trace=cuda,nvtx,osrt --force-overwrite=true --output "$OUT/gpurnn_steps" \
    "$PY" profiling/train_steps.py "$@" || exit 1
nsys stats --report nvtx_sum,cuda_gpu_kern_sum,cuda_api_sum --format table "$OUT/gpurnn_steps.nsys-rep"
