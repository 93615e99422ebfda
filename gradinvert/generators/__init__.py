"""Generative image priors: architectures, generator files, and ``--generator`` resolution."""

from gradinvert.generators.dcgan import DCGANDiscriminator, DCGANGenerator, dcgan_init_
from gradinvert.generators.loader import Generator, arch_record, load_generator
from gradinvert.generators.store import GeneratorFile, load_generator_file, save_generator

__all__ = [
    "DCGANDiscriminator",
    "DCGANGenerator",
    "Generator",
    "GeneratorFile",
    "arch_record",
    "dcgan_init_",
    "load_generator",
    "load_generator_file",
    "save_generator",
]
