#!/usr/bin/env bash
# compute-sanitizer over the persistent kernel families of profiling/gpu_smoke.py (block,
# opt-in, cooperative and paired-load variants, each checked against the CPU), run in one
# process (gpu_smoke.py --jobs 0).
#
#     bash profiling/sanitize.sh                      (a GPU machine with compute-sanitizer)
#
# Tools (SANITIZE_TOOLS, default "memcheck racecheck"), one after another, so memcheck
# (out-of-bounds and misaligned accesses) finishes before racecheck (shared-memory hazards: a
# missing syncthreads) starts; families SANITIZE_FAMILIES (default "block optin coop pairs").
# Of SANITIZE_SECONDS (default 160) each tool gets an equal share, its cap and the 3 s its
# `timeout` waits before KILL included, so the caps fit inside the caller's. Every process
# stays in this script's process group (`timeout --foreground`), so a caller's timeout ends
# them all; after a tool's cap, what its target left behind (processes of this group handed to
# init or a subreaper) is killed before the next tool starts. Each tool's whole output streams
# to stdout as it comes (profiling/gpu_check.sh keeps it as $OUT/sanitize.log) and to
# $SANITIZE_LOG_DIR/sanitize_TOOL.log (a temporary folder by default). CuPy's memory pool is
# off in the checked process (GPU_SMOKE_NO_POOL=1), so memcheck sees each array's own bounds.
# Exit status: 0 clean, 1 a tool reported errors, timed out or a check failed, 3 no
# compute-sanitizer here.
set -u
cd "$(dirname "$0")/.." || exit 1
LOGS=${SANITIZE_LOG_DIR:-$(mktemp -d)}
mkdir -p "$LOGS"
PY=${PYTHON:-python3}
read -r -a TOOLS <<< "${SANITIZE_TOOLS:-memcheck racecheck}"
TOTAL=${SANITIZE_SECONDS:-160}
read -r -a FAMILIES <<< "${SANITIZE_FAMILIES:-block optin coop pairs}"
KILL_AFTER=3
LIMIT=$((TOTAL / ${#TOOLS[@]} - KILL_AFTER - 1))
GROUP=$(ps -o pgid= $$ | tr -d ' ')

orphans() {   # this group's processes whose parent is outside it, its leader aside: a killed tool's children
    ps -e -o pid=,ppid=,pgid= | awk -v g="$GROUP" '$3 == g { member[$1] = 1; parent[$1] = $2 }
        END { for (p in parent) if (!(parent[p] in member) && p != g) print p }'
}
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
for tool in "${TOOLS[@]}"; do
    echo "--- $tool ($(date -u +%H:%M:%S) UTC, limit ${LIMIT} s): ${FAMILIES[*]}"
    timeout --foreground --kill-after=$KILL_AFTER "$LIMIT" "$SANITIZER" --tool "$tool" --error-exitcode 1 \
        --print-limit 20 "$PY" profiling/gpu_smoke.py --jobs 0 "${FAMILIES[@]}" > >(tee "$LOGS/sanitize_$tool.log") 2>&1
    rc=$?
    case $rc in
        0) verdicts+=("$tool clean") ;;
        124 | 137) verdicts+=("$tool TIMED OUT"); status=1
            # shellcheck disable=SC2046  # pids, meant to split
            kill -KILL $(orphans) 2> /dev/null ;;   # the checked process, if the sanitizer left it behind
        *) verdicts+=("$tool rc=$rc"); status=1 ;;
    esac
    echo "--- $tool: rc=$rc"
done
echo "full logs in $LOGS"
printf -v joined '%s, ' "${verdicts[@]}"
echo "verdict: ${joined%, }"
exit $status
