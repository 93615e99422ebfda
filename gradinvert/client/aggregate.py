"""Secure aggregation as the server sees it (Bonawitz et al. 2017; DESIGN.md §12): only the
FedAvg-weighted mean of M clients' updates of one round, never one client's.

For gradients of mean losses the weighted mean Σ_i (B_i / ΣB) g_i is the gradient of the mean
loss over the union of the members' batches (without BatchNorm in train mode, which normalizes
each member's batch by its own statistics); for FedAvg deltas it is the mean of M clients' local
trainings. The aggregate records each member's batch size, local training and seed in a
``secure-aggregation`` entry of its defense list, so an attack can simulate every member.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

from gradinvert.io.files import BatchFile, UpdateFile
from gradinvert.io.update_schema import MAX_CLIENTS
from gradinvert.runtime.errors import InvalidInputError

# Per-client fields of a defense entry (they differ between members of one protocol).
CLIENT_FIELDS = {"norm_before", "clipped_examples", "examples_seen", "noise_seed"}


def protocol(defense: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A defense list without its per-client fields: what all members of a round share."""
    return [{k: v for k, v in entry.items() if k not in CLIENT_FIELDS} for entry in defense]


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].shape == b[k].shape and a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a
    )


def aggregation_problems(updates: Sequence[UpdateFile], names: Sequence[str]) -> list[str]:
    """Every reason the updates are not M clients' updates of one model and round."""
    problems: list[str] = []
    if len(updates) > MAX_CLIENTS:
        problems.append(f"{len(updates)} updates: at most {MAX_CLIENTS} clients")
    first, head = updates[0], names[0]
    for update, name in zip(updates, names, strict=True):
        if update.batch_size is None:
            problems.append(f"{name}: records no batch size (the mean's weight)")
        if any(e.get("name") == "secure-aggregation" for e in update.defense):
            problems.append(f"{name}: is already an aggregate")
    for update, name in zip(updates[1:], names[1:], strict=True):
        checks = [
            (update.kind != first.kind, f"kind {update.kind}, {head} is a {first.kind}"),
            (
                update.model.to_dict() != first.model.to_dict(),
                f"model {update.model.arch}, {head} has {first.model.arch} "
                "(or other constructor arguments)",
            ),
            (
                update.input.to_dict() != first.input.to_dict(),
                "another input shape or normalization",
            ),
            (update.mode != first.mode, f"BN mode {update.mode}, {head} {first.mode}"),
            (update.loss != first.loss, "another loss"),
            (
                not _same_state(update.params, first.params)
                or not _same_state(update.buffers, first.buffers),
                f"another global model state (round) than {head}",
            ),
            (
                {k: tuple(v.shape) for k, v in update.update.items()}
                != {k: tuple(v.shape) for k, v in first.update.items()},
                f"other update tensors than {head}",
            ),
            (
                protocol(update.defense) != protocol(first.defense),
                f"another defense than {head}",
            ),
        ]
        if update.kind == first.kind == "delta":
            mine, theirs = update.local, first.local
            checks.append(
                (
                    mine is None
                    or theirs is None
                    or (mine.steps, mine.lr, mine.optimizer)
                    != (theirs.steps, theirs.lr, theirs.optimizer),
                    f"another local training (steps, lr, optimizer) than {head}",
                )
            )
        problems += [f"{name}: {why}" for bad, why in checks if bad]
    return problems


def aggregate_updates(updates: Sequence[UpdateFile], names: Sequence[str]) -> UpdateFile:
    """The batch-size-weighted mean of the members' updates, recording every member.

    Raises ``InvalidInputError`` naming every mismatch (models, rounds, kinds, ...) at once.
    """
    if not updates:
        raise InvalidInputError("no updates to aggregate")
    problems = aggregation_problems(updates, names)
    if problems:
        raise InvalidInputError("cannot aggregate: " + "; ".join(problems))
    sizes = [int(u.batch_size) for u in updates]  # type: ignore[arg-type]
    total = sum(sizes)
    first = updates[0]
    mean = {
        name: sum(
            (
                u.update[name].double() * (size / total)
                for u, size in zip(updates, sizes, strict=True)
            ),
            torch.zeros_like(value, dtype=torch.float64),
        ).to(value.dtype)
        for name, value in first.update.items()
    }
    members = [
        {
            "batch_size": size,
            "local": None if u.local is None else dict(u.local.__dict__),
            "seed": u.seed,
        }
        for u, size in zip(updates, sizes, strict=True)
    ]
    entry = {
        "name": "secure-aggregation",
        "clients": len(updates),
        "weighting": "batch-size",
        "members": members,
    }
    return dataclasses.replace(
        first,
        update=mean,
        batch_size=total,
        bn_stats={},  # one client's batch statistics are exactly what SecAgg hides
        defense=[*protocol(first.defense), entry],
        threat={**first.threat, "bn_stats_shared": False, "secure_aggregation": True},
        seed=None,
        source={"tool": "aggregate", "members": list(names)},
    )


def union_truth(batches: Sequence[BatchFile], names: Sequence[str]) -> BatchFile:
    """The members' truth batches as one batch, in member order."""
    shapes = {tuple(b.images.shape[1:]) for b in batches}
    if len(shapes) > 1:
        raise InvalidInputError(
            "truth batches of different image shapes: "
            + ", ".join(
                f"{n} {tuple(b.images.shape[1:])}" for n, b in zip(names, batches, strict=True)
            )
        )
    return BatchFile(
        torch.cat([b.images for b in batches]),
        torch.cat([b.labels for b in batches]),
        {"source": "union", "members": list(names)},
    )


def members_of(update: UpdateFile) -> list[dict[str, Any]] | None:
    """The members a secure aggregate records (None for one client's update)."""
    for entry in update.defense:
        if entry.get("name") == "secure-aggregation":
            return list(entry["members"])
    return None
