"""What an attack assumes of a FedAvg delta whose local training was not recorded."""

from __future__ import annotations

import dataclasses

from gradinvert.io.files import LocalTraining, UpdateFile
from gradinvert.runtime.errors import InvalidInputError


def assume_local_training(update: UpdateFile) -> tuple[UpdateFile, str | None]:
    """A delta without ``local`` metadata (``import`` without --local-*) is taken as one SGD
    step on the whole batch with learning rate 1, i.e. the delta is −1 × one gradient.

    Returns the update to attack and a note saying so (None when nothing was assumed).
    """
    if update.kind != "delta" or update.local is not None:
        return update, None
    if update.batch_size is None:
        raise InvalidInputError(
            "the delta records neither its local training nor its batch size: import it "
            "again with --batch-size (and --local-steps/--local-lr when known)"
        )
    assumed = LocalTraining(steps=1, lr=1.0, batch_size=update.batch_size)
    note = (
        f"the update's local training is unknown: assuming one SGD step on the whole batch "
        f"of {update.batch_size} with lr 1 (cosine objectives ignore the lr; with l2/sql2 "
        "the scale is off unless the lr really was 1)"
    )
    return dataclasses.replace(update, local=assumed), note
