"""Tests of the Carlini-Wagner attacks: CW L2 against the closed-form minimal L2 distance of a linear model, the CW
margin loss in L-inf PGD against the closed-form L-inf optimum, real-image strength, the contracts and the registry."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TinyNet, binary_problem, fooled, margin
from torch import nn

from spikeshield.attacks import CW, LOSSES, PGD, make_attack
from spikeshield.data.info import DatasetInfo

EPS = 8 / 255


class LinearNet(nn.Module):
    """Logits ``W x + b``: the minimal L2 distance to the class boundary of a 2-class problem is closed-form."""

    is_stochastic = False  # declared, so attacks do not probe it with extra calls

    def __init__(self, size: int = 4, classes: int = 2, seed: int = 0) -> None:
        super().__init__()
        self.info = DatasetInfo("linear", 1, size, classes, (0.5,), (0.5,))
        self.fc = nn.Linear(size * size, classes)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(classes, size * size, generator=torch.Generator().manual_seed(seed)))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def linear_problem(batch: int = 8):
    """Interior images (pixels in [0.3, 0.7]) labelled with the predicted class, the minimal L2 distances
    ``margin / ||w_y - w_other||_2`` and the exact minimisers ``x - margin d / ||d||^2`` (``d = w_y - w_other``)."""
    model = LinearNet()
    x = 0.3 + 0.4 * torch.rand(batch, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        z = model(x)
    y = z.argmax(1)
    d = model.fc.weight[y] - model.fc.weight[1 - y]
    gap = z.gather(1, y[:, None]).squeeze(1) - z.gather(1, (1 - y)[:, None]).squeeze(1)
    x_opt = x - (gap / d.norm(dim=1) ** 2)[:, None, None, None] * d.view_as(x)
    return model, x, y, (gap / d.norm(dim=1)).detach(), x_opt.detach()


# ----------------------------------------------------------------------------------------------- closed forms
def test_cw_finds_the_closed_form_minimal_l2_distance():
    """Measured: 200 Adam steps x 8 rounds end within 2% of the exact distance (50 x 5 within 22%)."""
    model, x, y, distance, x_opt = linear_problem()
    assert (distance > 0.1).all() and 0.05 < x_opt.min() and x_opt.max() < 0.95, "the box must not be active"
    attack = CW(model, steps=200, binary_steps=8)
    x_adv = attack(x, y)
    assert attack.last_success.all() and fooled(model, x_adv, y).all()
    assert torch.allclose(attack.last_l2, (x_adv - x).flatten(1).norm(dim=1))
    ratio = attack.last_l2 / distance
    assert (ratio >= 1 - 1e-4).all(), f"beat the exact minimal distance: {ratio}"
    assert (ratio <= 1.05).all(), f"not within 5% of the minimal L2 distance: {ratio}"
    assert attack.forward_passes == 8 * (200 + 1) * len(x)


def test_cw_targeted_and_kappa_on_a_three_class_linear_model():
    model = LinearNet(classes=3, seed=2)
    x = 0.3 + 0.4 * torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        target = (model(x).argmax(1) + 1) % 3
    attack = CW(model, targeted=True, steps=100, binary_steps=6)
    x_adv = attack(x, target)
    with torch.no_grad():
        assert (model(x_adv).argmax(1) == target).all()
    confident = CW(model, targeted=True, kappa=1.0, steps=100, binary_steps=6)
    x_conf = confident(x, target)
    with torch.no_grad():
        assert (-LOSSES["cw"](model(x_conf), target) >= 1.0 - 1e-5).all(), "margin kappa not reached"
    assert (confident.last_l2 > attack.last_l2).all(), "a confidence margin must cost distance"


def test_cw_respects_the_linf_ball_and_returns_x_for_failures():
    model, x, y, _, _ = linear_problem()
    attack = CW(model, eps=0.01, steps=20, binary_steps=2)  # 16 pixels x 0.01 cannot reach L2 distance > 0.1
    x_adv = attack(x, y)
    assert torch.equal(x_adv, x)
    assert not attack.last_success.any() and (attack.last_l2 == 0).all()
    wide = CW(model, eps=0.2, steps=100, binary_steps=5)
    x_adv = wide(x, y)
    assert (x_adv - x).abs().max().item() <= 0.2 + 1e-6
    assert wide.last_success.any()


@pytest.mark.parametrize("eps", [0.05, 0.3])
def test_pgd_with_the_cw_loss_reaches_the_closed_form_optimum(eps):
    """For two classes the CW margin is minus the margin of ``binary_problem``: PGD must reach the same corner."""
    model, x, y, x_star = binary_problem(eps)
    attack = PGD(model, eps, alpha=eps / 4, steps=12, loss="cw")
    x_adv = attack(x, y)
    assert attack.loss_name == "cw"
    assert torch.allclose(margin(model, x_adv, y), margin(model, x_star, y), atol=1e-4)


def test_cw_loss_by_hand():
    z = torch.tensor([[4.0, 1.0, 2.0], [1.0, 3.0, 0.0]])
    assert torch.allclose(LOSSES["cw"](z, torch.tensor([0, 2])), torch.tensor([2.0 - 4.0, 3.0 - 0.0]))
    assert torch.allclose(LOSSES["cw"](z + 7, torch.tensor([1, 0])), torch.tensor([4.0 - 1.0, 3.0 - 1.0]))


# ----------------------------------------------------------------------------------------- real images, real SNN
def test_cw_fools_the_trained_lenet_and_leaves_it_alone(trained_lenet, fmnist_eval):
    """Measured (16 images, 14 initially correct, 3 rounds): lr 0.05 fools 12 of them; the registry's lr 0.01
    (50 steps move a pixel by at most about 0.25) fools 7 with 3 or 5 rounds. CW is deterministic here."""
    x, y = fmnist_eval[0][:16], fmnist_eval[1][:16]
    before = {k: v.clone() for k, v in trained_lenet.state_dict().items()}
    correct = ~fooled(trained_lenet, x, y)
    attack = make_attack("cw", trained_lenet, 1.0, binary_steps=3, lr=0.05)
    x_adv = attack(x, y)
    now = fooled(trained_lenet, x_adv, y)
    assert (now & correct).sum().item() >= 0.7 * correct.sum().item(), f"CW fooled {(now & correct).sum()}"
    assert torch.equal(now, attack.last_success)
    assert (attack.last_l2[correct & now] > 0).all() and torch.equal(x_adv[~now], x[~now])
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    assert 0 <= x_adv.min().item() and x_adv.max().item() <= 1
    assert not trained_lenet.training
    assert all(torch.equal(before[k], v) for k, v in trained_lenet.state_dict().items())
    assert all(p.grad is None for p in trained_lenet.parameters()), "CW accumulated parameter gradients"
    bounded = CW(trained_lenet, EPS, steps=5, binary_steps=1)(x, y)
    assert (bounded - x).abs().max().item() <= EPS + 1e-6


def test_cw_with_eot_on_a_stochastic_model():
    model = TinyNet(1, 4, 3, noise=0.05)
    x = 0.3 + 0.4 * torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0])
    attack = CW(model, steps=3, binary_steps=2, eot=3)
    x_adv = attack(x, y)
    assert attack.forward_passes == 2 * (3 + 1) * 4 * 3
    assert 0 <= x_adv.min().item() and x_adv.max().item() <= 1


# --------------------------------------------------------------------------------------- errors and the registry
def test_cw_bad_settings_are_clear_errors():
    model = LinearNet()
    for kwargs, match in [({"c": 0}, "c must"), ({"c": -1.0}, "c must"), ({"kappa": -0.1}, "kappa"),
                          ({"lr": 0}, "lr"), ({"lr": float("nan")}, "lr"), ({"steps": 0}, "steps"),
                          ({"binary_steps": 0}, "binary_steps"), ({"binary_steps": 1.5}, "binary_steps"),
                          ({"loss": "ce"}, "own margin loss"), ({"eps": 1.5}, "eps")]:
        with pytest.raises(ValueError, match=match):
            CW(model, **kwargs)
    with pytest.raises(ValueError, match="2 classes"):
        LOSSES["cw"](torch.zeros(2, 1), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        CW(model)(torch.rand(2, 1, 4, 4), torch.tensor([0, 2]))


def test_cw_registry_entries(trained_lenet):
    cw = make_attack("CW", trained_lenet, 1.0)
    assert isinstance(cw, CW) and cw.name == "cw"
    assert (cw.c, cw.kappa, cw.steps, cw.lr, cw.binary_steps, cw.eps) == (1.0, 0.0, 50, 0.01, 5, 1.0)
    cw_pgd = make_attack("cw_pgd", trained_lenet, EPS)
    assert type(cw_pgd) is PGD and cw_pgd.name == "cw-pgd"
    assert (cw_pgd.loss_name, cw_pgd.steps, cw_pgd.alpha, cw_pgd.random_start) == ("cw", 30, 0.01, True)
    for attack in [cw, cw_pgd]:
        json.dumps(attack.settings())
    assert cw.settings()["binary_steps"] == 5 and cw.settings()["loss"] == "cw"
