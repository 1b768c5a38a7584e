#!/usr/bin/env bash
# compute-sanitizer over the kernel families of profiling/gpu_smoke.py (the step path and the
# persistent block, opt-in, cooperative and paired-load variants, each checked against the CPU).
#
#     bash profiling/sanitize.sh                      (a GPU machine with compute-sanitizer)
#
# Tools (SANITIZE_TOOLS, default "memcheck racecheck synccheck"), one after another, each
# under its own `timeout`, so memcheck (out-of-bounds and misaligned accesses) finishes before
# racecheck (shared-memory hazards: a missing syncthreads) and synccheck (barriers not reached
# by every thread) start. Of SANITIZE_SECONDS (default 160) memcheck gets half, each other
# tool a quarter. Each tool's whole
# output streams to stdout as it comes (profiling/gpu_check.sh keeps it as $OUT/sanitize.log)
# and to $SANITIZE_LOG_DIR/sanitize_TOOL.log (a temporary folder by default). CuPy's memory
# pool is off in the checked process (GPU_SMOKE_NO_POOL=1), so memcheck sees each array's
# own bounds. Families: memcheck runs SANITIZE_FAMILIES (default "block optin coop pairs
# step"), racecheck and synccheck SANITIZE_SYNC_FAMILIES (default "block optin coop pairs":
# the kernels whose barriers and shared memory are the subtle ones; racecheck slows every
# launch most).
# Exit status: 0 clean, 1 a tool reported errors, timed out or a check failed, 3 no
# compute-sanitizer here.
set -u
cd "$(dirname "$0")/.." || exit 1
LOGS=${SANITIZE_LOG_DIR:-$(mktemp -d)}
mkdir -p "$LOGS"
PY=${PYTHON:-python3}
TOOLS=${SANITIZE_TOOLS:-memcheck racecheck synccheck}
TOTAL=${SANITIZE_SECONDS:-160}
read -r -a FAMILIES <<< "${SANITIZE_FAMILIES:-block optin coop pairs step}"
read -r -a SYNC_FAMILIES <<< "${SANITIZE_SYNC_FAMILIES:-block optin coop pairs}"
SANITIZER=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2> /dev/null)
if [ -z "$SANITIZER" ]; then
    echo "sanitize.sh: compute-sanitizer is not installed here (not on PATH, not in /usr/local/cuda/bin):" \
        "nothing checked"
    echo "verdict: no compute-sanitizer"
    exit 3
fi
export NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS=0 PYTHONUNBUFFERED=1 GPU_SMOKE_NO_POOL=1
status=0
verdicts=()
for tool in $TOOLS; do
    if [ "$tool" = memcheck ]; then
        limit=$((TOTAL / 2)) families=("${FAMILIES[@]}")
    else
        limit=$((TOTAL / 4)) families=("${SYNC_FAMILIES[@]}")
    fi
    echo "--- $tool ($(date -u +%H:%M:%S) UTC, limit ${limit} s): ${families[*]}"
    set -o pipefail
    timeout --kill-after=5 "$limit" "$SANITIZER" --tool "$tool" --error-exitcode 1 --print-limit 20 \
        "$PY" profiling/gpu_smoke.py "${families[@]}" 2>&1 | tee "$LOGS/sanitize_$tool.log"
    rc=$?
    set +o pipefail
    case $rc in
        0) verdicts+=("$tool clean") ;;
        124 | 137) verdicts+=("$tool TIMED OUT"); status=1 ;;
        *) verdicts+=("$tool rc=$rc"); status=1 ;;
    esac
    echo "--- $tool: rc=$rc"
done
echo "full logs in $LOGS"
printf -v joined '%s, ' "${verdicts[@]}"
echo "verdict: ${joined%, }"
exit $status
