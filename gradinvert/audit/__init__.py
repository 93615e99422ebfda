"""Whole audits: the demo's capture → labels → invert → evaluate chain on the shipped samples."""

from gradinvert.runtime.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "DemoConfig": "demo",
        "run_demo": "demo",
    },
)
