"""The file formats and their validation: update, batch and labels files, their metadata schema and
tensor checks, image files and folders, plain-tensor batches, label maps, atomic writes, and the
summaries `inspect` prints.
"""

from gradinvert.runtime.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "BatchFile": "files",
        "LocalTraining": "files",
        "UpdateFile": "files",
        "atomic_path": "atomic",
        "load_any_batch": "batch_input",
        "load_batch": "files",
        "load_images": "images",
        "load_pt": "tensorfile",
        "load_update": "files",
        "parse_labels": "files",
        "read_header": "tensorfile",
        "read_safetensors": "files",
        "read_tensors": "tensorfile",
        "refuse_checkpoint_overwrite": "outputs",
        "refuse_clobbering": "outputs",
        "save_batch": "files",
        "save_update": "files",
        "summarize": "describe",
        "write_labels": "files",
        "write_text_atomic": "atomic",
    },
)
