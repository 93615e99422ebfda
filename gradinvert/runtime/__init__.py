"""Running on a machine: exit-code errors, the device, memory estimates and bounds, run state
(Ctrl-C, SIGTERM), the long runs' one checkpoint mechanism and the CPU allocator.
"""

from gradinvert.runtime.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "CheckpointKind": "checkpoint",
        "Estimate": "resources",
        "ExitCode": "errors",
        "GradinvertError": "errors",
        "InterruptedRun": "checkpoint",
        "Interruptible": "runstate",
        "InvalidInputError": "errors",
        "LongRun": "checkpoint",
        "MissingInputError": "errors",
        "UnavailableError": "errors",
        "UsageError": "errors",
        "check_memory": "resources",
        "fingerprint": "checkpoint",
        "human_bytes": "resources",
        "keep_freed_memory": "allocator",
        "parse_memory": "resources",
        "resolve_device": "device",
    },
)
