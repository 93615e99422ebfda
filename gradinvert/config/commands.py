"""Imports every command's settings module, so that a recorded ``command`` name finds its
class (see :func:`gradinvert.config.base.recorded_settings`)."""

from gradinvert.config import attack, invert, learn_prior, train_inverter

__all__ = ["attack", "invert", "learn_prior", "train_inverter"]
