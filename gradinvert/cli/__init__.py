"""Command-line interface: thin typer commands over the library, one module per command."""

from gradinvert.runtime.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {"app": "main"})
