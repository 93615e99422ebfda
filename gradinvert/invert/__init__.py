"""Gradient inversion: the engine that optimizes candidate batches whose gradients match a shared
update, its search spaces, objectives, priors, group consistency and stages, and
:func:`invert_file`, the library call behind ``gradinvert invert``. The attack settings and
presets live in :mod:`gradinvert.config`."""

from gradinvert.runtime.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "DivergedError": "engine",
        "InterruptedRun": "engine",
        "LabelChoice": "attack",
        "invert_file": "pipeline",
        "resolve_labels": "attack",
        "run_attack": "attack",
    },
)
