"""Imports every command's settings module, so that a recorded ``command`` name finds its
class (see :func:`gradinvert.config.base.recorded_settings`)."""

from gradinvert.config import (
    aggregate,
    attack,
    audit,
    capture,
    demo,
    evaluate,
    import_update,
    invert,
    labels,
    learn_prior,
    report,
    train_inverter,
    train_prior,
)

__all__ = [
    "aggregate",
    "attack",
    "audit",
    "capture",
    "demo",
    "evaluate",
    "import_update",
    "invert",
    "labels",
    "learn_prior",
    "report",
    "train_inverter",
    "train_prior",
]
