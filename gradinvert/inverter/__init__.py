"""Learned inverters (GIT, after Chen & Liu 2025, and LTI's MLP baseline): train, store, apply."""

from gradinvert.runtime.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Inverter": "base",
        "InverterFile": "store",
        "PairMaker": "pairs",
        "build_inverter": "store",
        "check_compatible": "apply",
        "estimate": "apply",
        "invert_with": "apply",
        "load_inverter": "store",
        "parameter_discrepancy": "apply",
        "parse_augment": "train",
        "save_inverter": "store",
        "train_inverter": "train",
    },
)
