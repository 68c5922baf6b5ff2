"""Transferability between two models: crafted on the source, scored on source and target."""

from __future__ import annotations

import pytest
from torch import nn

from spikeshield.attacks import PGD
from spikeshield.evaluation import evaluate, transferability

EPS = 8 / 255


class Blind(nn.Module):
    """A lookup table: the label of the stored image nearest in L-inf. Distinct images lie far more than 2 eps
    apart, so no perturbation inside the eps-ball changes its answer."""

    def __init__(self, labels, images) -> None:
        super().__init__()
        self.keys, self.labels = images.flatten(1), labels

    def forward(self, x):
        # nearest stored image (L-inf) decides; an eps-ball around a stored image keeps its label
        d = (x.flatten(1)[:, None] - self.keys[None]).abs().amax(-1)
        return nn.functional.one_hot(self.labels[d.argmin(1)], 10).float()


def test_self_transfer_is_the_white_box_attack(trained_lenet, fmnist_eval):
    x, y = fmnist_eval
    r = transferability(trained_lenet, trained_lenet, x, y, attack="pgd7", eps=EPS, batch_size=32)
    white = evaluate(trained_lenet, x, y, attacks="pgd7", eps=EPS, batch_size=32, progress=False)
    assert r.source_robust_acc == r.target_robust_acc == white.robust_acc["pgd7"]
    assert r.source_clean_acc == r.target_clean_acc == white.clean_acc
    assert r.n_transferable > 5 and r.transfer_rate == 1.0
    assert r.attack["name"] == "pgd7" and r.n_examples == len(y)


def test_a_model_the_perturbation_cannot_move_gets_nothing_transferred(trained_lenet, fmnist_eval):
    x, y = fmnist_eval
    blind = Blind(y, x)
    r = transferability(trained_lenet, blind, x, y, attack=PGD(trained_lenet, EPS, steps=5), eps=EPS)
    assert r.target_clean_acc == 1.0 and r.target_robust_acc == 1.0
    assert r.n_transferable > 0 and r.transfer_rate == 0.0
    assert r.source_robust_acc < r.source_clean_acc


def test_transferability_errors(trained_lenet, fmnist_batch):
    x, y = fmnist_batch
    with pytest.raises(ValueError, match="source"):
        transferability(trained_lenet, trained_lenet, x, y, attack=PGD(nn.Linear(2, 2), EPS))
    with pytest.raises(ValueError, match="eps"):
        transferability(trained_lenet, trained_lenet, x, y, attack=PGD(trained_lenet, 4 / 255))
    with pytest.raises(TypeError, match="registry name"):
        transferability(trained_lenet, trained_lenet, x, y, attack=3)


def test_transfer_to_a_random_model_from_a_deterministic_source_does_not_ask_for_eot(trained_lenet, fmnist_eval):
    """The transfer attack follows the source's gradient, so a deterministic source needs no EOT even when the
    target is random; a white-box attack with one draw on the random target still gets the warning."""
    import warnings

    from spikeshield.attacks import Transfer
    from spikeshield.models import create_model

    x, y = fmnist_eval
    target = create_model("lenet", encoder="rsc1-0.1", T=2).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluate(target, x[:4], y[:4], attacks=[Transfer(target, 8 / 255, source=trained_lenet, attack="fgsm")],
                 progress=False)
    with pytest.warns(UserWarning, match="eot=1"):
        evaluate(target, x[:4], y[:4], attacks="fgsm", eot=1, progress=False)
