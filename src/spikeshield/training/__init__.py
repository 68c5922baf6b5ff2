"""Training: one loop (:func:`train`), objectives by name, pickle-free resumable state.

>>> result = train_from_file("configs/quick.yaml")          # doctest: +SKIP
>>> result.final["test_acc"], result.checkpoint              # doctest: +SKIP
"""

from spikeshield.training.objectives import OBJECTIVES, cross_entropy, get_objective
from spikeshield.training.orthogonal import orthogonal_retraction
from spikeshield.training.trainer import (
    TrainResult,
    clean_accuracy,
    epoch_batches,
    log_epoch,
    make_optimizer,
    make_training_attack,
    train,
    train_from_file,
    write_checkpoint,
)

__all__ = [
    "OBJECTIVES",
    "TrainResult",
    "cross_entropy",
    "epoch_batches",
    "clean_accuracy",
    "get_objective",
    "log_epoch",
    "make_optimizer",
    "make_training_attack",
    "orthogonal_retraction",
    "train",
    "train_from_file",
    "write_checkpoint",
]
