"""Label restoration from a shared update's last linear layer (DESIGN.md §5.5).

from gradinvert.labels import restore_labels, multiset_accuracy
result = restore_labels(load_update("u.safetensors"))      # method "auto"
result.labels, result.method, result.details
"""

from gradinvert.runtime.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "LabelResult": "restore",
        "LastLayer": "layer",
        "LastLayerUpdate": "layer",
        "METHODS": "restore",
        "find_last_linear": "layer",
        "last_layer_update": "layer",
        "locate_last_linear": "layer",
        "multiset_accuracy": "restore",
        "restore_labels": "restore",
    },
)
