"""Learned inverters (GIT, after Chen & Liu 2025, and LTI's MLP baseline): train, store, apply."""

from gradinvert.inverter.apply import check_compatible, estimate, invert_with, parameter_discrepancy
from gradinvert.inverter.base import Inverter
from gradinvert.inverter.pairs import PairMaker
from gradinvert.inverter.store import InverterFile, build_inverter, load_inverter, save_inverter
from gradinvert.inverter.train import TrainInverterConfig, parse_augment, train_inverter

__all__ = [
    "Inverter",
    "InverterFile",
    "PairMaker",
    "TrainInverterConfig",
    "build_inverter",
    "check_compatible",
    "estimate",
    "invert_with",
    "load_inverter",
    "parameter_discrepancy",
    "parse_augment",
    "save_inverter",
    "train_inverter",
]
