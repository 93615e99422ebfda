"""Model registry and specs, and the trust policy for ``package.module:factory`` paths."""

from gradinvert.runtime.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "CodeTrust": "trust",
        "InputSpec": "spec",
        "ModelSpec": "spec",
        "NORMALIZATIONS": "spec",
        "UntrustedCodeError": "trust",
        "available_models": "registry",
        "build_model": "registry",
        "load_state": "registry",
        "model_spec": "registry",
        "read_state_dict": "registry",
        "register": "registry",
        "trust_code": "trust",
    },
)
