"""What a client does: capture a gradient or FedAvg delta, import one from a real deployment, apply
defenses, record BatchNorm statistics.
"""

from gradinvert.runtime.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "CaptureConfig": "capture",
        "DefenseConfig": "defenses",
        "apply_defenses": "defenses",
        "build_update": "import_update",
        "capture_update": "capture",
        "read_inputs": "import_update",
        "record_bn_inputs": "bnstats",
    },
)
