"""The ``device`` fixture: a test that takes it runs on the CPU and, where present, on CUDA.

CUDA parameters carry the ``cuda`` marker (select them with ``-m cuda``; their ids end in
``[cuda]``, so ``-k cuda`` works too) and are skipped, not failed, where torch sees no CUDA.
On CUDA a test runs in full float32 precision (no TF32) with deterministic kernels, so that
its comparisons are as tight as on the CPU: the tests check the device path's values, not the
speed settings of a GPU.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

# cuBLAS reads this when CUDA starts: deterministic matrix products (torch's documented setting).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import pytest  # noqa: E402
import torch  # noqa: E402

CUDA_AVAILABLE = torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip every CUDA-marked test where torch sees no CUDA device."""
    if CUDA_AVAILABLE:
        return
    skip = pytest.mark.skip(reason="CUDA is not available")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def device(request: pytest.FixtureRequest) -> Iterator[torch.device]:
    """``cpu``, then ``cuda`` (skipped without a GPU), as a :class:`torch.device`."""
    if request.param == "cpu":
        yield torch.device("cpu")
        return
    with exact_cuda():
        yield torch.device("cuda")


@contextlib.contextmanager
def exact_cuda() -> Iterator[None]:
    """Full float32 precision and deterministic kernels on CUDA while the block runs."""
    backends = torch.backends
    saved = (
        backends.cuda.matmul.allow_tf32,
        backends.cudnn.allow_tf32,
        backends.cudnn.deterministic,
        backends.cudnn.benchmark,
    )
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    backends.cuda.matmul.allow_tf32 = False
    backends.cudnn.allow_tf32 = False
    backends.cudnn.deterministic = True
    backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        (
            backends.cuda.matmul.allow_tf32,
            backends.cudnn.allow_tf32,
            backends.cudnn.deterministic,
            backends.cudnn.benchmark,
        ) = saved
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
