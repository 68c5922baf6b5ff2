"""Tests of the attack wrappers: EOT (sugar for the ``eot=`` argument), BPDA (straight-through / approximate
gradients through a non-differentiable stage, Athalye et al. 2018) and Transfer (black-box: craft on a source model,
score on the target)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TinyNet
from torch import nn

from spikeshield.attacks import BPDA, EOT, FGSM, MIFGSM, PGD, BPDAModel, Transfer, make_attack, with_bpda
from spikeshield.decision import DEFAULT_EOT
from spikeshield.evaluation import evaluate
from spikeshield.models import create_model

EPS = 8 / 255


def quantise(x: torch.Tensor) -> torch.Tensor:
    """8-level input quantisation, a non-differentiable preprocessing (its gradient is zero almost everywhere)."""
    return torch.round(x * 7) / 7


class Quantise(nn.Module):
    """:func:`quantise` as a module, for the undefended pipeline ``nn.Sequential(Quantise(), classifier)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return quantise(x)


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def input_grad(model, x, y) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(nn.functional.cross_entropy(model(x), y), x)
    return g


# ----------------------------------------------------------------------------------------------------------- EOT
@pytest.mark.parametrize("cls", [PGD, MIFGSM])
def test_eot_wrapper_equals_eot_argument(cls):
    model = TinyNet(1, 4, 3, noise=0.2)
    x, y = torch.rand(6, 1, 4, 4), torch.randint(0, 3, (6,))
    base = cls(model, EPS, steps=3)
    wrapped = EOT(base, 5)
    torch.manual_seed(7)
    a = wrapped(x, y)
    torch.manual_seed(7)
    b = cls(model, EPS, steps=3, eot=5)(x, y)
    assert torch.equal(a, b)
    # 3 gradients and the last iterate's loss, each 5 draws x 6 images, plus 10-draw confirmations of iterates the
    # EOT-averaged logits call fooled (a stochastic model)
    assert wrapped.eot == 5 and wrapped.settings()["eot"] == 5
    assert wrapped.forward_passes >= 4 * 5 * 6 and (wrapped.forward_passes - 4 * 5 * 6) % wrapped.score_draws == 0
    assert base.eot == DEFAULT_EOT and base.forward_passes == 0  # the wrapped attack is a copy
    assert type(wrapped) is cls and wrapped.model is model


def test_eot_validation():
    atk = PGD(TinyNet(), EPS)
    for bad in (0, -1, 1.5, True, "10"):
        with pytest.raises(ValueError, match="draws"):
            EOT(atk, bad)
    with pytest.raises(TypeError, match="Attack instance"):
        EOT(TinyNet(), 10)


def test_eot_on_transfer_reaches_the_source_attack():
    target, source = TinyNet(noise=0.1), TinyNet(noise=0.1)
    atk = EOT(Transfer(target, EPS, source=source, attack="pgd7"), 4)
    assert atk.eot == 4 and atk.source_attack.eot == 4
    atk(torch.rand(2, 1, 4, 4), torch.tensor([0, 1]))
    passes = atk.forward_passes  # 7 gradients + the last iterate's loss, 4 draws x 2 images, + 10-draw confirmations
    assert passes >= 8 * 4 * 2 and (passes - 8 * 4 * 2) % atk.source_attack.score_draws == 0


# ---------------------------------------------------------------------------------------------------------- BPDA
def test_bpda_forward_is_exact_and_backward_is_the_approximation():
    x = torch.rand(4, 1, 5, 5, requires_grad=True)
    out = BPDA(quantise)(x)
    assert torch.equal(out, quantise(x.detach()))
    (g,) = torch.autograd.grad(out.sum(), x)
    assert torch.equal(g, torch.ones_like(x))  # identity backward
    out = BPDA(quantise, approximation=lambda z: 3 * z)(x)
    assert torch.equal(out, quantise(x.detach()))
    (g,) = torch.autograd.grad(out.sum(), x)
    assert torch.allclose(g, torch.full_like(x, 3.0))


def test_bpda_errors():
    with pytest.raises(TypeError, match="callable"):
        BPDA(3)
    with pytest.raises(TypeError, match="approximation"):
        BPDA(quantise, approximation=1.0)
    with pytest.raises(ValueError, match="shape"):
        BPDA(lambda z: z.flatten(1))(torch.rand(2, 1, 3, 3))


def test_quantisation_hides_gradients_and_bpda_restores_them(trained_lenet, fmnist_eval):
    x, y = fmnist_eval
    plain = nn.Sequential(Quantise(), trained_lenet)
    bpda = with_bpda(quantise, trained_lenet)
    with torch.no_grad():
        assert torch.equal(plain(x), bpda(x))  # same forward pass
    clean = accuracy(plain, x, y)
    # without BPDA the input gradient is exactly zero, so PGD cannot move
    assert input_grad(plain, x, y).abs().max() == 0
    x_adv = PGD(plain, 0.1, alpha=0.025, steps=2, random_start=False)(x, y)
    assert torch.equal(x_adv, x) and accuracy(plain, x_adv, y) == clean
    # with BPDA the gradients are non-zero and the same PGD breaks the defence
    assert input_grad(bpda, x, y).abs().max() > 0
    x_adv = PGD(bpda, 0.1, alpha=0.025, steps=7, random_start=False)(x, y)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6
    robust = accuracy(plain, x_adv, y)
    assert robust <= clean - 0.2, (clean, robust)


def test_with_bpda_looks_like_the_classifier(trained_lenet, fmnist_batch):
    model = with_bpda(quantise, trained_lenet)
    assert isinstance(model, BPDAModel)
    assert model.info is trained_lenet.info and model.num_classes == 10 and model.is_stochastic is False
    assert not model.training and trained_lenet.training is False
    assert model.config["name"] == trained_lenet.config["name"] and "bpda" in model.config
    assert with_bpda(quantise, TinyNet(noise=0.1)).is_stochastic
    assert with_bpda(quantise, nn.Linear(4, 2)).info is None and with_bpda(quantise, nn.Linear(4, 2)).config is None
    with pytest.raises(ValueError, match="channels|shape|size"):
        FGSM(model, EPS)(torch.rand(2, 3, 28, 28), torch.tensor([0, 1]))  # the classifier's info checks inputs
    x, y = fmnist_batch
    result = evaluate(model, x, y, attacks="fgsm", eps=EPS, progress=False)
    assert 0 <= result.robust_acc["fgsm"] <= result.clean_acc
    assert list(model.parameters()) == list(trained_lenet.parameters())


# ------------------------------------------------------------------------------------------------------ Transfer
def test_transfer_from_itself_equals_white_box(trained_lenet, fmnist_batch):
    x, y = fmnist_batch
    torch.manual_seed(3)
    a = Transfer(trained_lenet, EPS, source=trained_lenet, attack="pgd7")(x, y)
    torch.manual_seed(3)
    b = make_attack("pgd7", trained_lenet, EPS)(x, y)
    assert torch.equal(a, b)


def test_transfer_contract_and_never_queries_the_target(trained_lenet, fmnist_batch):
    x, y = fmnist_batch
    target = create_model("lenet", dataset="fashion_mnist", ann=True).eval()
    calls = []
    hook = target.register_forward_hook(lambda *_: calls.append(1))
    try:
        atk = Transfer(target, EPS, source=trained_lenet, attack="pgd7", eot=2)
        x_adv = atk(x, y)
    finally:
        hook.remove()
    assert not calls  # black-box: only the source is attacked
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    assert (x_adv - x).abs().max() <= EPS + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv != x).any()
    assert atk.forward_passes == 8 * 2 * 16 and atk.eot == 2  # 7 gradients + the last iterate's loss
    assert atk.name == "transfer-pgd7"
    record = json.loads(json.dumps(atk.settings()))
    assert record["attack"] == "Transfer" and record["source_attack"]["steps"] == 7
    assert record["source"]["name"] == "lenet"
    # transferred examples from the trained source fool the trained model itself more than clean data does
    assert accuracy(trained_lenet, x_adv, y) < accuracy(trained_lenet, x, y)


def test_transfer_with_an_attack_instance_and_in_evaluate(trained_lenet, fmnist_batch):
    x, y = fmnist_batch
    target = TinyNet(1, 28, 10).eval()
    atk = Transfer(target, EPS, attack=FGSM(trained_lenet, EPS))
    assert atk.source is trained_lenet and atk.name == "transfer-fgsm"
    result = evaluate(target, x, y, attacks=[atk], eps=EPS, progress=False)
    assert "transfer-fgsm" in result.robust_acc


def test_transfer_errors(trained_lenet):
    with pytest.raises(ValueError, match="same inputs"):
        Transfer(TinyNet(3, 8, 10), EPS, source=trained_lenet)
    with pytest.raises(ValueError, match="same inputs"):
        Transfer(TinyNet(1, 28, 3), EPS, source=trained_lenet)  # different classes
    with pytest.raises(ValueError, match="source model"):
        Transfer(trained_lenet, EPS, attack="pgd7")
    with pytest.raises(ValueError, match="same eps"):
        Transfer(trained_lenet, EPS, attack=PGD(trained_lenet, 4 / 255))
    with pytest.raises(ValueError, match="named attack"):
        Transfer(trained_lenet, EPS, attack=PGD(trained_lenet, EPS), steps=3)
    with pytest.raises(ValueError, match="built on the source"):
        Transfer(trained_lenet, EPS, source=TinyNet(1, 28, 10), attack=PGD(trained_lenet, EPS))
    with pytest.raises(ValueError, match="unknown|nosuch"):
        Transfer(trained_lenet, EPS, source=trained_lenet, attack="nosuch")
    with pytest.raises(TypeError, match="registry name"):
        Transfer(trained_lenet, EPS, source=trained_lenet, attack=3)
