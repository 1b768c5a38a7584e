#!/usr/bin/env bash
# compute-sanitizer over the persistent kernels (profiling/persistent_smoke.py: block and
# cooperative variants, forward and exact/truncated backward, checked against the CPU).
#
#     bash profiling/sanitize.sh                      (a GPU machine with compute-sanitizer)
#
# Tools (SANITIZE_TOOLS, default "memcheck racecheck synccheck"): memcheck (out-of-bounds and
# misaligned accesses), racecheck (shared-memory hazards: a missing syncthreads), synccheck
# (barriers not reached by every thread). They run at the same time, one process each, since
# each process compiles the kernels again. stdout gets each tool's errors and summary (what
# profiling/gpu_check.sh keeps as $OUT/sanitize.log: the device tool brings back at most 8
# files from $OUT, so the full logs go to $SANITIZE_LOG_DIR, a temporary folder by default).
# Exit status: 0 clean, 1 a tool reported errors or a check failed, 3 no compute-sanitizer here.
set -u
cd "$(dirname "$0")/.." || exit 1
LOGS=${SANITIZE_LOG_DIR:-$(mktemp -d)}
mkdir -p "$LOGS"
PY=${PYTHON:-python3}
TOOLS=${SANITIZE_TOOLS:-memcheck racecheck synccheck}
SANITIZER=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2> /dev/null)
if [ -z "$SANITIZER" ]; then
    echo "sanitize.sh: compute-sanitizer is not installed here (not on PATH, not in /usr/local/cuda/bin); nothing checked" >&2
    exit 3
fi
export NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS=0 PYTHONUNBUFFERED=1
pids=()
for tool in $TOOLS; do
    "$SANITIZER" --tool "$tool" --error-exitcode 1 --print-limit 20 \
        "$PY" profiling/persistent_smoke.py > "$LOGS/sanitize_$tool.log" 2>&1 &
    pids+=($!)
done
status=0
i=0
for tool in $TOOLS; do
    wait "${pids[$i]}"
    rc=$?
    i=$((i + 1))
    [ "$rc" = 0 ] || status=1
    echo "--- $tool: rc=$rc"
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY|MISMATCH|Error|error" "$LOGS/sanitize_$tool.log" | head -n 20
    tail -n 3 "$LOGS/sanitize_$tool.log"
done
echo "sanitize: $([ $status = 0 ] && echo clean || echo 'ERRORS (see above)'); full logs in $LOGS"
exit $status
