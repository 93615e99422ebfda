"""Adapters that turn real FL frameworks' traffic into gradinvert files (optional extras)."""

from gradinvert.runtime.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {"RecordUpdates": "flower"})
