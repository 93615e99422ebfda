"""The audit report: many `evaluate --json` runs in one self-contained HTML page."""

from gradinvert.audit.page import Verdict, render_report, verdict
from gradinvert.audit.runs import Run, load_run, swept_setting

__all__ = ["Run", "Verdict", "load_run", "render_report", "swept_setting", "verdict"]
