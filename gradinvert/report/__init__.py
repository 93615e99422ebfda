"""What a person looks at: image grids (PNG), rich tables, and the self-contained HTML audit report
with its sweep plots.
"""

from gradinvert.runtime.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "InertConsole": "console",
        "Run": "runs",
        "Verdict": "page",
        "images_table": "tables",
        "load_run": "runs",
        "one_line": "console",
        "render_grid": "grid",
        "render_report": "page",
        "result_grid": "grid",
        "save_grid": "grid",
        "save_result_grid": "grid",
        "summary_table": "tables",
        "swept_setting": "runs",
        "verdict": "page",
    },
)
