#!/usr/bin/env bash
# The GPU check: the CUDA tests, then the GPU figures, in one run of under 8 minutes.
#
#   bash benchmarks/gpu_check.sh                        # on a machine with a CUDA GPU
#   bash benchmarks/gpu_check.sh --device cpu --quick   # dry run of the logic (no GPU figures)
#   bash benchmarks/gpu_check.sh --fetch-wheels         # here, before a GPU machine without a
#                                                       # package registry (see below)
#
# Run from the repository root. It needs a Python whose torch sees the GPU: $PYTHON, else
# .venv/bin/python when `make install` made one, else python3. What the project needs on top of
# torch is installed when missing: from the wheels in .gpu-wheels/ when that folder is there
# (made by --fetch-wheels on a machine that reaches the registry; for a GPU machine that reaches
# none, carry the folder along), else by `make install`. Nothing is installed into that Python:
# the wheels go to .gpu-site/, put on PYTHONPATH with the repository itself.
#
# Steps, each under its own time limit inside an overall one ($GPU_CHECK_SECONDS, default 460):
#   1. environment: the requirements of pyproject.toml, and torch seeing CUDA;
#   2. the CUDA tests: `pytest -m cuda` over the test files that run on the `device` fixture;
#   3. the figures: benchmarks/gpu_figures.py writes benchmarks/results/gpu.md (a dry run writes
#      to the log folder instead), rewritten after every case.
# A step that fails or runs out of time is recorded and the next one still runs; the page and
# the logs are copied to $OUT when that is set (the device tool brings back what is there),
# else left in $GPU_CHECK_LOGS (default /tmp/gradinvert-gpu-check).
# Exit status: 0 when every step passed, 1 when one failed, 2 for a bad option.
set -euo pipefail

DEVICE=cuda
QUICK=""
FETCH=""
for arg in "$@"; do
    case "$arg" in
        --device=*) DEVICE="${arg#--device=}" ;;
        --device) ;;
        cpu | cuda | cuda:*) DEVICE="$arg" ;;
        --quick) QUICK=--quick ;;
        --fetch-wheels) FETCH=1 ;;
        -h | --help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
    esac
done

cd "$(dirname "$0")/.."
ROOT=$PWD
WHEELS=$ROOT/.gpu-wheels
SITE=$ROOT/.gpu-site
# The test files whose tests take the `device` fixture or carry the cuda marker.
CUDA_TESTS=(tests/test_invert_engine.py tests/test_search_spaces.py tests/test_capture.py
    tests/test_metrics.py tests/test_group.py)

if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

if [[ -n "$FETCH" ]]; then
    # The pure-Python packages the project needs beyond torch, at the versions installed here,
    # as wheels for the GPU machine's Python (3.12, x86-64 Linux unless GPU_PYTHON_VERSION says).
    if [[ ! -x .venv/bin/python ]]; then
        echo "gpu_check.sh --fetch-wheels: run \`make install\` first (it pins the versions)" >&2
        exit 1
    fi
    mapfile -t pins < <(.venv/bin/python benchmarks/gpu_env.py pins)
    rm -rf "$WHEELS"
    .venv/bin/python -m pip download --quiet --no-deps --only-binary=:all: \
        --python-version "${GPU_PYTHON_VERSION:-3.12}" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$WHEELS" "${pins[@]}"
    ls "$WHEELS"
    echo "wheels in .gpu-wheels/: carry that folder to the GPU machine" >&2
    exit 0
fi

LOGS=${GPU_CHECK_LOGS:-/tmp/gradinvert-gpu-check}
mkdir -p "$LOGS"
LOG=$LOGS/gpu_check.log
: >"$LOG"
DEADLINE=${GPU_CHECK_SECONDS:-460}
if [[ -n "$QUICK" || "$DEVICE" != cuda* ]]; then
    PAGE=$LOGS/gpu-dryrun.md # a dry run never writes the GPU figures' page
else
    PAGE=benchmarks/results/gpu.md
fi
FAILED=()
TESTS="not run"
FIGURES_RAN=0

say() { echo "[gpu_check $(date -u +%H:%M:%S) +${SECONDS}s] $*" | tee -a "$LOG" >&2; }
left() { echo $((DEADLINE - SECONDS)); }
# limit CAP: the seconds a step may take, CAP at most and what is left of the overall limit
limit() {
    local rest
    rest=$(left)
    if ((rest < $1)); then echo $((rest > 5 ? rest : 5)); else echo "$1"; fi
}
# step NAME SECONDS COMMAND...: run one step under its limit, logged, never stopping the script
step() {
    local name=$1 seconds=$2 status=0
    shift 2
    say "$name (limit ${seconds} s): $*"
    set +e
    timeout --kill-after=10 "$seconds" "$@" 2>&1 | tee -a "$LOG"
    status=${PIPESTATUS[0]}
    set -e
    if ((status == 124 || status == 137)); then
        say "$name: stopped after its time limit"
        FAILED+=("$name (time limit)")
    elif ((status != 0)); then
        say "$name: failed (exit $status)"
        FAILED+=("$name (exit $status)")
    fi
    return 0
}
finish() {
    local status=$?
    if ((FIGURES_RAN == 0)); then # say what happened; a page of figures is never overwritten
        PAGE=$LOGS/gpu-not-taken.md
        {
            echo "# GPU figures: not taken"
            echo
            echo "benchmarks/gpu_check.sh (device $DEVICE${QUICK:+, quick}) stopped before the"
            echo "figures. CUDA tests: $TESTS. Failed: ${FAILED[*]:-none}."
        } >"$PAGE"
    fi
    say "done in ${SECONDS}s; failed steps: ${FAILED[*]:-none}; page: $PAGE; logs: $LOGS"
    if [[ -n "${OUT:-}" ]]; then
        mkdir -p "$OUT"
        cp -f "$PAGE" "$LOGS"/*.log "$LOGS"/*.txt "$OUT/" 2>/dev/null || true
    fi
    if ((status == 0 && ${#FAILED[@]} > 0)); then
        exit 1
    fi
}
trap finish EXIT

say "device $DEVICE${QUICK:+ (quick dry run)}, python $PYTHON, overall limit ${DEADLINE}s"

# 1. environment ---------------------------------------------------------------------------
export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 PYTEST_DISABLE_PLUGIN_AUTOLOAD=1
if ! "$PYTHON" benchmarks/gpu_env.py missing >"$LOGS/missing.txt" 2>&1; then
    say "missing here: $(tr '\n' ';' <"$LOGS/missing.txt")"
    if [[ -d "$WHEELS" ]]; then
        step install "$(limit 120)" "$PYTHON" -m pip install --quiet --no-index --no-deps \
            --no-compile --disable-pip-version-check --root-user-action=ignore --upgrade \
            --target "$SITE" "$WHEELS"/*.whl
    else
        step install "$(limit 400)" make install
        PYTHON=.venv/bin/python
    fi
    if ! "$PYTHON" benchmarks/gpu_env.py missing >"$LOGS/missing.txt" 2>&1; then
        say "still missing: $(tr '\n' ';' <"$LOGS/missing.txt")"
        FAILED+=("environment")
    fi
fi
CUDA_SEEN='import sys, torch; sys.exit(not torch.cuda.is_available())'
if [[ "$DEVICE" == cuda* ]] && ! "$PYTHON" -c "$CUDA_SEEN"; then
    say "torch sees no CUDA device: no CUDA tests, no figures"
    FAILED+=("no CUDA")
    exit 1
fi
"$PYTHON" - <<'EOF' 2>&1 | tee -a "$LOG"
import torch
print("torch", torch.__version__, "CUDA", torch.version.cuda, torch.cuda.is_available())
if torch.cuda.is_available():
    print("GPU", torch.cuda.get_device_name(0))
EOF

# 2. the CUDA tests ------------------------------------------------------------------------
step "cuda-tests" "$(limit 150)" "$PYTHON" -m pytest -m cuda -p no:cacheprovider -rfEs \
    "${CUDA_TESTS[@]}"
# pytest's closing line ("12 passed, 1 skipped in 30.1s"), for the page
TESTS=$(grep -E '^=* ?[0-9]+ (passed|failed|skipped|error|deselected)' "$LOG" | tail -1 |
    sed -E 's/=+//g; s/^ +| +$//g' || true)
TESTS=${TESTS:-"no summary (see gpu_check.log)"}
echo "$TESTS" >"$LOGS/cuda_tests.txt"
say "CUDA tests: $TESTS"

# 3. the figures ---------------------------------------------------------------------------
SECONDS_LEFT=$(left)
FIGURES_RAN=1
step figures "$(limit $((SECONDS_LEFT - 5)))" "$PYTHON" benchmarks/gpu_figures.py \
    --device "$DEVICE" $QUICK --budget $((SECONDS_LEFT - 45)) --tests "$TESTS" --out "$PAGE"
