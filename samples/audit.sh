#!/usr/bin/env bash
# A shell audit: how much does Gaussian noise on the shared gradient protect a batch?
#
# For each noise level it runs the four commands (capture -> labels -> invert -> evaluate) on the
# same 4 sample photos, prints PSNR, SSIM and label accuracy per setting, and ends with a gate:
# the deployment's setting (DEPLOYED_NOISE) must not leak above PSNR_BAR dB, else exit 1. Its last
# line names the HTML report it wrote (`gradinvert report`).
#
#   bash samples/audit.sh                    # defaults below
#   NOISES="0 0.01" ITERATIONS=100 bash samples/audit.sh
set -euo pipefail

cd "$(dirname "$0")/.."
GRADINVERT=${GRADINVERT:-$([ -x .venv/bin/gradinvert ] && echo .venv/bin/gradinvert || echo gradinvert)}
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
NOISES=${NOISES:-"0 0.001 0.01 0.1"}
DEPLOYED_NOISE=${DEPLOYED_NOISE:-0.01}
PSNR_BAR=${PSNR_BAR:-14}
ITERATIONS=${ITERATIONS:-200}
MODEL=${MODEL:-convnet}
WORK=${WORK:-$(mktemp -d -t gradinvert-audit.XXXXXX)}

run() { "$GRADINVERT" "$@" 2>>"$WORK/log.txt"; }

printf '%-10s %10s %8s %10s\n' "noise" "PSNR(dB)" "SSIM" "label_acc"
for sigma in $NOISES; do
  dir="$WORK/noise-$sigma"
  mkdir -p "$dir"
  run capture --model "$MODEL" --images samples/images32 --batch-size 4 --labels 0,1,2,3 \
    --noise "$sigma" --seed 0 --device cpu --out "$dir/u.safetensors" --truth "$dir/t.safetensors"
  run labels "$dir/u.safetensors" --out "$dir/labels.json"
  run invert "$dir/u.safetensors" --attack ig --labels "$dir/labels.json" --seeds 2 \
    --iterations "$ITERATIONS" --device cpu --out "$dir/r.safetensors"
  # Exit code 1 only means a gate tripped; no gate is given here, so anything else is an error.
  run evaluate "$dir/r.safetensors" --truth "$dir/t.safetensors" --lpips off --json "$dir/scores.json"
  "$PYTHON" - "$dir/scores.json" "$sigma" <<'EOF'
import json, sys
summary = json.load(open(sys.argv[1]))["summary"]
print(f"{sys.argv[2]:<10} {summary['psnr']['mean']:>10.2f} {summary['ssim']['mean']:>8.3f} "
      f"{summary['label_acc']:>10.2f}")
EOF
done

echo "files and logs: $WORK" >&2
gate_dir="$WORK/noise-$DEPLOYED_NOISE"
if [ ! -f "$gate_dir/r.safetensors" ]; then
  echo "DEPLOYED_NOISE=$DEPLOYED_NOISE is not among NOISES=\"$NOISES\"" >&2
  exit 2
fi
set +e
run evaluate "$gate_dir/r.safetensors" --truth "$gate_dir/t.safetensors" --lpips off \
  --fail-above "psnr=$PSNR_BAR"
status=$?
set -e
if [ "$status" -eq 0 ]; then
  echo "PASS: noise $DEPLOYED_NOISE keeps the reconstruction below $PSNR_BAR dB" >&2
elif [ "$status" -eq 1 ]; then
  echo "FAIL: noise $DEPLOYED_NOISE leaks above $PSNR_BAR dB" >&2
fi

# One HTML page for people who do not read JSON: every setting's scores, the sweep plot, the
# grids and each setting's verdict against the same bar.
scores=()
for sigma in $NOISES; do scores+=("$WORK/noise-$sigma/scores.json"); done
run report "${scores[@]}" --fail-above "psnr=$PSNR_BAR" --title "noise sweep ($MODEL)" \
  --out "$WORK/report.html"
echo "report: $WORK/report.html"
exit "$status"
