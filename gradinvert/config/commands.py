"""Imports every command's settings module, so that a recorded ``command`` name finds its
class (see :func:`gradinvert.config.base.recorded_settings`)."""

from gradinvert.config import attack, invert

__all__ = ["attack", "invert"]
