"""The README's audit example: `gradinvert audit samples/audit-plan.toml` (the trained convnet after
0, 1 and 5 epochs × batch 1 and 4 validation digits × noise 0 and 0.01 × the ig and gradinversion
attacks at 200 iterations: 24 jobs) run with 2 local workers and the bar psnr = 18, its plots
copied to benchmarks/results/audit_example/ and its cells summarized in
benchmarks/results/audit_example.md.

    python benchmarks/audit_example.py [--workers 2] [--out build/audit-example]

A rerun of the same plan into the same folder skips every finished job (the audit's own resume),
so the summary can be rewritten without attacking again.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PLAN = ROOT / "samples" / "audit-plan.toml"
BAR = "psnr=18"


def _cell(row: dict) -> str:
    epoch = Path(row["victim.weights"]).stem.rsplit("-", 1)[-1]
    return (
        f"| {epoch} | {row['data.batch_size']} | {row['defense.noise']:g} | {row['attack']} "
        f"| {row['psnr']:.2f} | {row['ssim']:.3f} | {row['label_acc']:.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "audit-example")
    args = parser.parse_args()
    gradinvert = Path(sys.executable).parent / "gradinvert"
    command = [str(gradinvert), "audit", str(PLAN), "--out", str(args.out)]
    command += ["--workers", str(args.workers), "--fail-above", BAR]
    started = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if run.returncode not in (0, 1):  # 1: a cell leaks above the bar, the audit's own answer
        raise SystemExit(f"gradinvert audit failed ({run.returncode}): {run.stderr[-2000:]}")
    rows = json.loads((args.out / "results.json").read_text(encoding="utf-8"))
    plots = RESULTS / "audit_example"
    plots.mkdir(parents=True, exist_ok=True)
    for png in sorted((args.out / "plots").glob("*.png")):
        shutil.copyfile(png, plots / png.name)
    leaking = [r for r in rows if r["leaks"]]
    summary = run.stderr.strip().splitlines()
    lines = [
        "# The README's audit example (benchmarks/audit_example.py)",
        "",
        f"`gradinvert audit samples/audit-plan.toml --workers {args.workers} "
        f"--fail-above {BAR}`: exit code {run.returncode}, {len(rows)} cells, "
        f"{len(leaking)} above the bar; wall time {wall:.0f} s (jobs skipped on a rerun do not "
        f"count: see the audit's own line below). Machine: {platform.machine()} CPU, "
        f"{os.cpu_count()} cores shared with other jobs (load average "
        f"{os.getloadavg()[0]:.1f} at the end), torch threads per job: 1.",
        "",
        f"The audit's last lines: `{summary[-2] if len(summary) > 1 else ''}` "
        f"`{summary[-1] if summary else ''}`",
        "",
        "Victims: `samples/victims/convnet-digits32-epoch{0,1,5}` (trained on the tuning digits "
        "0000-1399, BN in train mode during capture); data: validation digits from 1400; "
        "attacks at 200 iterations, far below their presets' budgets (every cell is flagged "
        "below budget: this shows the machinery, not evidence of safety). Labels restored from "
        "the update (`auto`). Plots: audit_example/*.png (one per swept axis, from the audit's "
        "own `plots/`).",
        "",
        "| checkpoint | batch | noise | attack | PSNR (dB) | SSIM | label acc. |",
        "|---|---|---|---|---|---|---|",
    ]
    order = sorted(
        rows,
        key=lambda r: (
            r["victim.weights"],
            r["data.batch_size"],
            r["defense.noise"],
            r["attack"],
        ),
    )
    lines += [_cell(row) for row in order if row["status"] == "done"]
    (RESULTS / "audit_example.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
