"""Model registry and specs, the trust policy for ``package.module:factory`` paths, and trained
victims (:func:`train_victim`)."""

from gradinvert.runtime.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "CodeTrust": "trust",
        "InputSpec": "spec",
        "ModelSpec": "spec",
        "NORMALIZATIONS": "spec",
        "UntrustedCodeError": "trust",
        "VictimRecipe": "victims",
        "available_models": "registry",
        "build_model": "registry",
        "load_state": "registry",
        "model_spec": "registry",
        "read_state_dict": "registry",
        "read_victim_info": "victims",
        "register": "registry",
        "train_victim": "victims",
        "trust_code": "trust",
    },
)
