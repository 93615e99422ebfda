"""Model registry and specs, and the trust policy for ``package.module:factory`` paths."""

from gradinvert.models.registry import (
    available_models,
    build_model,
    load_state,
    model_spec,
    read_state_dict,
    register,
)
from gradinvert.models.spec import NORMALIZATIONS, InputSpec, ModelSpec
from gradinvert.models.trust import CodeTrust, UntrustedCodeError, trust_code

__all__ = [
    "NORMALIZATIONS",
    "CodeTrust",
    "InputSpec",
    "ModelSpec",
    "UntrustedCodeError",
    "available_models",
    "build_model",
    "load_state",
    "model_spec",
    "read_state_dict",
    "register",
    "trust_code",
]
