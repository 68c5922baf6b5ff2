"""Tests of SA-PGD (METHODS 7): the update rule by hand, the step-size schedule, closed-form optima, strength
against PGD on real images, EOT / gradient modes / targeted, errors and the registry."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from conftest import TinyNet, binary_problem, fooled, margin
from torch import nn

from spikeshield.attacks import APGD, PGD, SAPGD, make_attack
from spikeshield.data.info import DatasetInfo

EPS = 8 / 255


class PixelNet(nn.Module):
    """Logits = the 4 pixels of a 1x2x2 image (4 classes); records every input it sees (the attack's iterates)."""

    is_stochastic = False  # declared, so attacks do not probe it with extra calls

    def __init__(self) -> None:
        super().__init__()
        self.info = DatasetInfo("pixels", 1, 2, 4, (0.5,), (0.5,))
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return x.flatten(1)


def spy_steps(attack: SAPGD) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Record ``(eta [B], x_in, x_out)`` of every update the attack takes."""
    calls = []
    update = attack._step

    def spy(x_adv, grad, step, x, i, state):
        out = update(x_adv, grad, step, x, i, state)
        calls.append((step.flatten().clone(), x_adv.clone(), out.clone()))
        return out

    attack._step = spy
    return calls


# ------------------------------------------------------------------------------------------------ the update rule
def test_update_rule_matches_a_hand_computation():
    """Two iterations on ``loss = -q.(x - x*)^2 / 2`` (gradient ``q (x* - x)``): per-sample normalised moments, the
    step ``clip(eta m / sqrt(v), -eta, eta)`` with ``eta = eps``, then the projection. ``x*`` lies inside the ball
    for three pixels (their gradient flips sign after the first step) and outside for the fourth. Sample 2's
    gradient is 1000 times larger: per-sample means make that irrelevant."""
    eps = 0.1
    x_star = 0.5 + torch.tensor([0.03, -0.02, 0.01, 0.5])
    q = torch.tensor([[1.0, 2.0, 3.0, 0.5], [1000.0, 2000.0, 3000.0, 500.0]])

    def loss(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -0.5 * (q * (z - x_star) ** 2).sum(1)

    model = PixelNet()
    x, y = torch.full((2, 1, 2, 2), 0.5), torch.tensor([0, 1])
    SAPGD(model, eps, loss=loss, steps=10)(x, y)  # first checkpoint after 2 iterations: both use eta = eps
    x0, x1, x2 = (s.flatten(1) for s in model.seen[:3])
    c = x.flatten(1)

    def proj(p: torch.Tensor) -> torch.Tensor:
        return torch.min(torch.max(p, c - eps), c + eps).clamp(0, 1)

    g0 = q * (x_star - x0)
    m = g0 / g0.abs().mean(1, keepdim=True)
    v = g0**2 / (g0**2).mean(1, keepdim=True)
    raw1 = eps * m / v.sqrt()
    assert (raw1.abs() >= eps - 1e-6).all(), "the first step is a full signed step (|m| / sqrt(v) >= 1)"
    assert torch.allclose(x1, proj(x0 + raw1.clamp(-eps, eps)), atol=1e-6)

    g1 = q * (x_star - x1)
    m = 0.5 * m + g1 / g1.abs().mean(1, keepdim=True)
    v = 0.8 * v + g1**2 / (g1**2).mean(1, keepdim=True)
    raw2 = eps * m / v.sqrt()
    assert (raw2.abs() > eps).any() and (raw2.abs() < eps - 1e-3).any(), "test values must exercise the clip"
    assert torch.allclose(x2, proj(x1 + raw2.clamp(-eps, eps)), atol=1e-6)
    # the run starts on the ball's surface
    assert torch.allclose((x0 - c).abs().amax(1), torch.full((2,), eps), atol=1e-6)


def test_a_vanishing_gradient_leaves_the_iterate_in_place_without_nans():
    """A dead SNN (no spike reaches the loss) has a zero input gradient: ``mean|g| = 0`` must not give NaN."""
    model = PixelNet()
    x, y = torch.rand(3, 1, 2, 2), torch.tensor([0, 1, 2])
    x_adv = SAPGD(model, 0.1, loss=lambda z, yy: 0 * z.sum(1), steps=5)(x, y)
    assert torch.isfinite(x_adv).all() and (x_adv - x).abs().max().item() <= 0.1 + 1e-6
    assert all(torch.equal(s, model.seen[0]) for s in model.seen), "an iterate moved without a gradient"


def test_eta_starts_at_eps_and_halves_at_each_checkpoint_of_a_stalled_run():
    """The objective is constant (0) but its gradient is not, so every checkpoint finds no progress. APGD's
    checkpoints for 100 steps fall after iterations 22, 41, 57, 70, 80, 87, 93 and 99."""
    w = torch.tensor([1.0, -2.0, 0.5, 3.0])

    def flat(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        lin = (w * z).sum(1)
        return lin - lin.detach()

    x, y = torch.full((2, 1, 2, 2), 0.5), torch.tensor([0, 1])
    attack = SAPGD(PixelNet(), 0.1, loss=flat, steps=100)
    calls = spy_steps(attack)
    attack(x, y)
    assert len(calls) == 100
    checkpoints = (22, 41, 57, 70, 80, 87, 93, 99)
    for i, (eta, x_in, x_out) in enumerate(calls):
        expected = 0.1 * 0.5 ** sum(i >= k for k in checkpoints)
        assert torch.allclose(eta, torch.full((2,), expected)), (i, eta, expected)
        assert (x_out - x_in).abs().max().item() <= expected + 1e-7
    assert torch.allclose((calls[0][2] - calls[0][1]).abs().amax((1, 2, 3)), torch.full((2,), 0.1), atol=1e-6)


class RisingNet(nn.Module):
    """Logit 0 grows by 1 with every forward pass (plus a small pixel term): the loss rises at every iterate."""

    is_stochastic = False  # declared, so attacks do not probe it with extra calls

    def __init__(self) -> None:
        super().__init__()
        self.info = DatasetInfo("rising", 1, 2, 3, (0.5,), (0.5,))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        z0 = self.calls + 0.01 * x.flatten(1).sum(1)
        return torch.stack([z0, torch.zeros_like(z0), torch.zeros_like(z0)], 1)


def test_eta_is_kept_while_the_loss_keeps_rising():
    """APGD's checkpoint rule (METHODS 7), not the reference's unconditional halving: no stall, no halving."""
    attack = SAPGD(RisingNet(), 0.1, loss=lambda z, y: z[:, 0], steps=20)  # checkpoints after 4, 7, 9, ...
    calls = spy_steps(attack)
    attack(torch.full((2, 1, 2, 2), 0.5), torch.tensor([0, 0]))
    assert len(calls) == 20 and all(torch.allclose(eta, torch.full((2,), 0.1)) for eta, _, _ in calls)


# --------------------------------------------------------------------------------------- optima and strength
@pytest.mark.parametrize("restarts", [1, 2])
@pytest.mark.parametrize("eps", [0.05, 0.3])
def test_sapgd_reaches_the_closed_form_optimum_of_a_monotone_binary_model(eps, restarts):
    model, x, y, x_star = binary_problem(eps)
    x_adv = SAPGD(model, eps, steps=10, restarts=restarts)(x, y)
    optimum = margin(model, x_star, y)
    assert torch.allclose(margin(model, x_adv, y), optimum, atol=1e-4), (margin(model, x_adv, y), optimum)
    assert (margin(model, x_adv, y) >= optimum - 1e-5).all(), "beat the exact optimum: the ball was left"


def test_sapgd_is_at_least_as_strong_as_pgd_on_real_images(trained_lenet, fmnist_eval):
    """Measured on the 64 images at eps 4/255, 10 steps (seeds 0-2): clean 18 wrong; PGD (alpha eps/4) 24 wrong with
    its last iterate, 25 with its best iterate; SA-PGD 24-25 wrong; mean CE of the outputs 0.978-0.979 (PGD) vs
    0.985-0.990 (SA-PGD; PGD's best iterate 0.991). SA-PGD may trail PGD's best iterate by one image."""
    x, y = fmnist_eval
    eps = 4 / 255
    pgd = PGD(trained_lenet, eps, alpha=eps / 4, steps=10)(x, y)
    sapgd = SAPGD(trained_lenet, eps, steps=10)(x, y)
    n_clean, n_pgd, n_sapgd = (fooled(trained_lenet, a, y).sum().item() for a in (x, pgd, sapgd))
    assert n_pgd > n_clean + 3, f"PGD should fool clearly more samples than clean errors ({n_pgd} vs {n_clean})"
    assert n_sapgd >= n_pgd - 1, f"SA-PGD fooled {n_sapgd} samples, PGD {n_pgd}"
    with torch.no_grad():
        ce_pgd, ce_sapgd = (F.cross_entropy(trained_lenet(a), y).item() for a in (pgd, sapgd))
    assert ce_sapgd >= ce_pgd - 0.01, f"SA-PGD reached a lower mean loss ({ce_sapgd:.4f}) than PGD ({ce_pgd:.4f})"


# ------------------------------------------------------------------------------------- the Attack contract
def test_sapgd_stays_in_ball_and_box_and_leaves_the_model_alone(trained_lenet, fmnist_batch):
    x, y = fmnist_batch[0][:8], fmnist_batch[1][:8]
    before = {k: v.clone() for k, v in trained_lenet.state_dict().items()}
    for eps, loss in [(EPS, "ce"), (0.3, "dlr"), (EPS, "cw")]:
        x_adv = SAPGD(trained_lenet, eps, loss=loss, steps=3)(x, y)
        assert x_adv.shape == x.shape and not x_adv.requires_grad
        assert (x_adv - x).abs().max().item() <= eps + 1e-6
        assert 0 <= x_adv.min().item() and x_adv.max().item() <= 1
        assert (x_adv != x).any() and not trained_lenet.training
    after = trained_lenet.state_dict()
    assert all(torch.equal(before[k], v) for k, v in after.items()), "parameters or buffers changed"
    assert all(p.grad is None for p in trained_lenet.parameters()), "the attack accumulated parameter gradients"


def test_sapgd_with_eot_and_a_swapped_surrogate(trained_lenet, fmnist_batch):
    x, y = fmnist_batch[0][:8], fmnist_batch[1][:8]
    torch.manual_seed(2)
    own = SAPGD(trained_lenet, EPS, steps=3)(x, y)
    torch.manual_seed(2)
    attack = SAPGD(trained_lenet, EPS, steps=3, eot=2, grad="triangle")
    triangle = attack(x, y)
    assert attack.settings()["grad"]["name"] == "triangle" and attack.settings()["eot"] == 2
    assert attack.forward_passes == 8 * 2 * (3 + 1)
    assert not torch.equal(own, triangle)
    assert (triangle - x).abs().max().item() <= EPS + 1e-6 and 0 <= triangle.min() and triangle.max() <= 1


def test_sapgd_with_eot_reaches_the_optimum_on_a_stochastic_binary_model():
    eps = 0.1
    model, x, y, x_star = binary_problem(eps, noise=0.05)
    attack = SAPGD(model, eps, steps=10, eot=4)
    x_adv = attack(x, y)
    assert torch.allclose(margin(model, x_adv, y), margin(model, x_star, y), atol=1e-4)
    # 11 gradients of 4 draws per image, then per image at most one 10-draw confirmation per iterate and, for a
    # fooled one, the loss (4 draws) and confirmation of its highest-loss point
    gradients = len(x) * 4 * (10 + 1)
    assert gradients <= attack.forward_passes <= gradients + len(x) * (10 * 11 + 4 + 10)


def test_targeted_sapgd_moves_towards_the_targets(trained_lenet, fmnist_batch):
    """Measured on the 16 images at eps 0.2, 10 steps: 0 classified as the target when clean, 10 after the attack."""
    x, y = fmnist_batch
    target = (y + 1) % 10
    x_adv = SAPGD(trained_lenet, 0.2, steps=10, targeted=True)(x, target)
    with torch.no_grad():
        clean_hits = (trained_lenet(x).argmax(1) == target).sum().item()
        hits = (trained_lenet(x_adv).argmax(1) == target).sum().item()
    assert hits >= clean_hits + 5, f"{hits} images classified as their target (clean: {clean_hits})"
    assert (x_adv - x).abs().max().item() <= 0.2 + 1e-6


def test_sapgd_is_reproducible_under_manual_seed(trained_lenet, fmnist_batch):
    x, y = fmnist_batch[0][:8], fmnist_batch[1][:8]
    attack = SAPGD(trained_lenet, EPS, steps=3)
    torch.manual_seed(3)
    a = attack(x, y)
    torch.manual_seed(3)
    assert torch.equal(a, attack(x, y))
    assert not torch.equal(a, attack(x, y)), "SA-PGD ignored the random generator"


def test_bad_settings_are_clear_errors(trained_lenet):
    with pytest.raises(ValueError, match="3 classes"):
        SAPGD(TinyNet(1, 2, 2), EPS, loss="dlr", steps=1)(torch.rand(2, 1, 2, 2), torch.tensor([0, 1]))
    for kwargs, match in [({"restarts": 0}, "restarts"), ({"steps": 0}, "steps"), ({"steps": 2.5}, "steps"),
                          ({"rho": 0}, "rho"), ({"rho": 1.5}, "rho"), ({"loss": "nosuchloss"}, "loss"),
                          ({"eot": 0}, "eot"), ({"grad": "nosuchgradient"}, "gradient")]:
        with pytest.raises(ValueError, match=match):
            SAPGD(trained_lenet, EPS, **kwargs)
    with pytest.raises(ValueError, match="eps"):
        SAPGD(trained_lenet, eps=1.5)


# ------------------------------------------------------------------------------------------------------ registry
def test_registry_entries_and_settings_round_trip(trained_lenet):
    ce = make_attack("sapgd", trained_lenet, EPS)
    assert type(ce) is SAPGD and isinstance(ce, APGD)
    assert (ce.steps, ce.restarts, ce.loss_name, ce.name, ce.initial_step) == (100, 1, "ce", "sapgd", 1.0)
    dlr = make_attack("SAPGD_DLR", trained_lenet, EPS, eot=2)
    assert (dlr.loss_name, dlr.eot, dlr.name) == ("dlr", 2, "sapgd-dlr")
    assert make_attack("sapgd@rga", trained_lenet, EPS).name == "sapgd@rga"
    custom = SAPGD(trained_lenet, EPS, loss="dlr", steps=7, restarts=2, rho=0.5, eot=3, targeted=True,
                   grad={"name": "triangle", "gamma": 0.5})
    for attack in (ce, dlr, custom):
        settings = attack.settings()
        json.dumps(settings)
        assert settings["attack"] == "SAPGD"
        rebuilt = make_attack("sapgd", trained_lenet, settings["eps"],
                              **{k: v for k, v in settings.items() if k not in ("attack", "eps")})
        assert rebuilt.settings() == settings
    assert custom.settings()["rho"] == 0.5 and custom.settings()["grad"] == {"name": "triangle", "gamma": 0.5}
