"""Generative image priors: architectures, generator files, and ``--generator`` resolution."""

from gradinvert.runtime.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "DCGANDiscriminator": "dcgan",
        "DCGANGenerator": "dcgan",
        "Generator": "loader",
        "GeneratorFile": "store",
        "arch_record": "loader",
        "dcgan_init_": "dcgan",
        "load_generator": "loader",
        "load_generator_file": "store",
        "save_generator": "store",
        "run_layers": "layers",
        "split_layers": "layers",
    },
)
