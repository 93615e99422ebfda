"""Compression a client applies to its update before sending it (DESIGN.md §12): top-k
sparsification (:func:`gradinvert.client.defenses.prune_smallest`), signSGD and stochastic
uniform quantization.
"""

from __future__ import annotations

import torch

Tensors = dict[str, torch.Tensor]
MIN_BITS, MAX_BITS = 2, 16


def sign_compress(tensors: Tensors) -> Tensors:
    """signSGD (Bernstein et al. 2018): each entry's sign, zeros stay zero."""
    return {name: torch.sign(value) for name, value in tensors.items()}


def quantize_stochastic(tensors: Tensors, bits: int, generator: torch.Generator) -> Tensors:
    """Stochastic uniform quantization per tensor, unbiased (QSGD-style stochastic rounding,
    Alistarh et al. 2017): one bit of sign and s = 2^(bits−1) − 1 magnitude levels of the
    tensor's largest magnitude m; |v|/m·s is rounded up with probability equal to its
    fractional part, so E[Q(v)] = v. ``bits = 2`` is ternary (TernGrad). Uniform draws come from
    ``generator`` on the CPU, tensor by tensor in the given order.
    """
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"bits must lie in {MIN_BITS}..{MAX_BITS}")
    levels = 2 ** (bits - 1) - 1
    out = {}
    for name, value in tensors.items():
        scale = value.detach().abs().max()
        draw = torch.rand(value.shape, generator=generator, dtype=torch.float64)
        if float(scale) == 0.0:
            out[name] = torch.zeros_like(value)
            continue
        ratio = value.double().abs() / scale.double() * levels
        lower = ratio.floor()
        level = lower + (draw.to(ratio.device) < (ratio - lower)).double()
        out[name] = (torch.sign(value.double()) * level * scale.double() / levels).to(value.dtype)
    return out
