"""Typed settings of every command (pydantic): read from TOML or JSON, layered (preset < file <
command line), validated with every problem at once, printed back as TOML; the attack presets
as data files (``presets/*.toml``) naming their papers and the source of every value."""

from gradinvert.runtime.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "AttackConfig": "attack",
        "InvertSettings": "invert",
        "LearnPriorSettings": "learn_prior",
        "PRESETS": "attack",
        "Preset": "attack",
        "SCHEMA_VERSION": "base",
        "Settings": "base",
        "TrainInverterSettings": "train_inverter",
        "TrainPriorSettings": "train_prior",
        "preset": "attack",
        "preset_table": "attack",
    },
)
