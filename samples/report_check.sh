#!/usr/bin/env bash
# `make report-check`: write a small audit report, render it in headless Chromium and check the
# screenshot (a page was drawn: not blank, with the plot's and the verdict's colours).
#
# Installs Debian's chromium package with apt-get when no chromium is on PATH; when that is not
# possible it says so and exits 69. The pytest suite checks the HTML itself; this checks that a
# browser draws it, offline (the page loads nothing from the network).
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
OUT=${OUT:-report-check}
mkdir -p "$OUT"

browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
  echo "chromium not found: installing Debian's chromium package (apt-get)" >&2
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
    >"$OUT/apt.log" 2>&1; then
    echo "could not install chromium (see $OUT/apt.log): the report was not rendered" >&2
    exit 69
  fi
  browser=$(command -v chromium)
fi

# A two-run sweep, short enough for a check; audit.sh exits 1 when its gate trips, which is fine.
NOISES="0 0.1" DEPLOYED_NOISE=0.1 ITERATIONS=30 WORK="$OUT/audit" \
  bash samples/audit.sh >"$OUT/audit.txt" || true
report=$(tail -n 1 "$OUT/audit.txt")
report=${report#report: }
if [ ! -f "$report" ]; then
  echo "samples/audit.sh wrote no report (see $OUT/audit.txt and $OUT/audit/log.txt)" >&2
  exit 70
fi

"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run \
  --disable-background-networking --window-size=1280,2200 \
  --screenshot="$OUT/report.png" "file://$(realpath "$report")" >"$OUT/chromium.log" 2>&1

"$PYTHON" - "$OUT/report.png" <<'PY'
import sys

import numpy as np
from PIL import Image

shot = Image.open(sys.argv[1]).convert("RGB")
r, g, b = np.asarray(shot, dtype=np.int32).transpose(2, 0, 1)
ink = float((np.minimum(np.minimum(r, g), b) < 200).mean())
blue = int(((b > 150) & (r < 100)).sum())  # the plot's lines and points
red = (r > 150) & (g < 80) & (b < 80)
green = (g > 100) & (r < 60) & (b < 90)
verdict = int((red | green).sum())  # the verdict's PASS / FAIL
print(f"screenshot {shot.width}x{shot.height}: {ink:.1%} ink, {blue} plot pixels, {verdict} verdict pixels")
if ink < 0.02 or blue == 0 or verdict == 0:
    sys.exit("the screenshot does not show the report (blank page, or no plot / verdict)")
PY
echo "screenshot: $OUT/report.png (rendered from $report)"
