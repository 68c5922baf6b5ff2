"""Tests of the strong attacks (MI-FGSM, APGD, APGD-T, Gaussian noise): closed-form optima, real-image strength,
the eps-ball contract, EOT, reproducibility, the DLR losses and the registry entries."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TinyNet, binary_problem, fooled, margin
from torch import nn

from spikeshield.attacks import (
    APGD,
    APGDT,
    BIM,
    LOSSES,
    MIFGSM,
    PGD,
    SAPGD,
    Attack,
    GaussianNoise,
    make_attack,
    parse_attack_list,
)
from spikeshield.attacks.apgd import targeted_dlr_loss
from spikeshield.data.info import DatasetInfo

EPS = 8 / 255


def new_attacks(model, eps=EPS, steps=3, **kw) -> list[Attack]:
    """One instance of every new attack class, with few steps (APGD-T with 2 targets)."""
    return [MIFGSM(model, eps, steps=steps, **kw), APGD(model, eps, steps=steps, **kw),
            APGD(model, eps, loss="dlr", steps=steps, **kw), APGDT(model, eps, steps=steps, n_target_classes=2, **kw),
            GaussianNoise(model, eps, **kw)]


@pytest.mark.parametrize("make", [
    lambda m, eps: PGD(m, eps, alpha=eps / 4, steps=12),
    lambda m, eps: APGD(m, eps, steps=10),
    lambda m, eps: APGD(m, eps, steps=10, restarts=2),
    lambda m, eps: MIFGSM(m, eps, alpha=eps / 4, steps=6),
], ids=["pgd", "apgd", "apgd-restarts", "mifgsm"])
@pytest.mark.parametrize("eps", [0.05, 0.3])
def test_attacks_reach_the_closed_form_optimum_of_a_monotone_binary_model(make, eps):
    model, x, y, x_star = binary_problem(eps)
    x_adv = make(model, eps)(x, y)
    optimum = margin(model, x_star, y)
    assert torch.allclose(margin(model, x_adv, y), optimum, atol=1e-4), (margin(model, x_adv, y), optimum)
    assert (margin(model, x_adv, y) >= optimum - 1e-5).all(), "beat the exact optimum: the ball was left"


class BowlNet(nn.Module):
    """Logits ``[0.1, -20 ||x - c||^2]``: the class-0 cross-entropy is largest at the interior point ``x = c`` and
    class 0 is always predicted, so an attack must home in on ``c`` (sign steps of a fixed size oscillate around it).
    """

    is_stochastic = False  # declared, so attacks do not probe it with extra calls

    def __init__(self, c: torch.Tensor) -> None:
        super().__init__()
        self.info = DatasetInfo("bowl", c.shape[1], c.shape[2], 2, (0.5,), (0.5,))
        self.register_buffer("c", c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = ((x - self.c) ** 2).flatten(1).sum(1)
        return torch.stack([torch.full_like(d, 0.1), -20 * d], 1)


@pytest.mark.parametrize("attack_cls", [APGD, SAPGD])
def test_apgd_step_size_schedule_finds_an_interior_optimum(attack_cls):
    """Measured: APGD-100 ends within 0.02 eps of ``c`` (step halved at the checkpoints), SA-PGD-100 within 0.004
    eps, PGD with alpha eps/4 at 0.24 eps (it oscillates)."""
    g = torch.Generator().manual_seed(0)
    x = 0.2 + 0.6 * torch.rand(6, 1, 4, 4, generator=g)
    c = x + EPS * (torch.rand(x.shape, generator=g) - 0.5)
    model, y = BowlNet(c), torch.zeros(6, dtype=torch.long)
    adaptive = attack_cls(model, EPS, steps=100)(x, y)
    pgd = PGD(model, EPS, alpha=EPS / 4, steps=100)(x, y)
    assert (adaptive - c).abs().max().item() < 0.05 * EPS
    assert (pgd - c).abs().max().item() > 0.1 * EPS


def test_apgd_with_eot_reaches_the_optimum_on_a_stochastic_binary_model():
    """Input noise keeps the margin monotone per pixel, so the optimum of the expected loss is the same corner."""
    eps = 0.1
    model, x, y, x_star = binary_problem(eps, noise=0.05)
    assert model.is_stochastic
    attack = APGD(model, eps, steps=10, eot=4)
    x_adv = attack(x, y)
    assert torch.allclose(margin(model, x_adv, y), margin(model, x_star, y), atol=1e-4)
    # 11 gradients of 4 draws per image, then per image at most one 10-draw confirmation per iterate and, for a
    # fooled one, the loss (4 draws) and confirmation of its highest-loss point
    gradients = len(x) * 4 * (10 + 1)
    assert gradients <= attack.forward_passes <= gradients + len(x) * (10 * 11 + 4 + 10)


# ----------------------------------------------------------------------------------------- real images, real SNN
def test_apgd_and_apgdt_are_at_least_as_strong_as_pgd7_on_real_images(trained_lenet, fmnist_eval):
    """Measured on the 64 images (seeds 0-3): clean 18 wrong; PGD7 27-28, APGD-CE (20 steps) 28-29, APGD-T (10 steps,
    3 targets) 28-29, APGD-DLR (20 steps) 27-28 wrong. The per-sample-best bookkeeping makes APGD's outputs
    consistent: every sample it reports fooled stays fooled."""
    x, y = fmnist_eval
    clean = fooled(trained_lenet, x, y).sum().item()
    pgd7 = fooled(trained_lenet, make_attack("pgd7", trained_lenet, EPS)(x, y), y).sum().item()
    apgd = fooled(trained_lenet, make_attack("apgd-ce", trained_lenet, EPS, steps=20)(x, y), y)
    apgdt = fooled(trained_lenet, make_attack("apgd-t", trained_lenet, EPS, steps=10, n_target_classes=3)(x, y), y)
    assert pgd7 > clean + 4, f"PGD7 should fool clearly more samples than clean errors ({pgd7} vs {clean})"
    assert apgd.sum().item() >= pgd7, f"APGD-CE fooled {apgd.sum().item()} samples, PGD7 {pgd7}"
    assert apgdt.sum().item() >= pgd7, f"APGD-T fooled {apgdt.sum().item()} samples, PGD7 {pgd7}"


def test_mifgsm_and_noise_on_real_images(trained_lenet, fmnist_eval):
    """MI-FGSM (5 steps of 2/255) takes a real bite; Gaussian noise of std 20/255 (unbounded) hurts far less."""
    x, y = fmnist_eval
    clean = fooled(trained_lenet, x, y).sum().item()
    mifgsm = fooled(trained_lenet, make_attack("mifgsm", trained_lenet, EPS)(x, y), y).sum().item()
    noise = fooled(trained_lenet, make_attack("gaussian", trained_lenet, 1.0)(x, y), y).sum().item()
    assert mifgsm >= clean + 5, f"MI-FGSM barely hurt: {mifgsm} fooled vs {clean} clean errors"
    assert noise < mifgsm, f"random noise ({noise}) beat a gradient attack ({mifgsm})"


def test_more_restarts_keep_every_sample_already_fooled(trained_lenet, fmnist_batch):
    """Restart 1 draws the same start under the same seed; later restarts only add fooled samples."""
    x, y = fmnist_batch
    torch.manual_seed(5)
    one = APGD(trained_lenet, EPS, steps=4, restarts=1)(x, y)
    torch.manual_seed(5)
    three = APGD(trained_lenet, EPS, steps=4, restarts=3)(x, y)
    first = fooled(trained_lenet, one, y)
    assert first.any() and torch.equal(three[first], one[first])
    assert (fooled(trained_lenet, three, y) >= first).all()


def test_mifgsm_without_momentum_is_bim(trained_lenet, fmnist_batch):
    x, y = fmnist_batch
    mi = MIFGSM(trained_lenet, EPS, alpha=2 / 255, steps=3, decay=0.0)(x, y)
    bim = BIM(trained_lenet, EPS, alpha=2 / 255, steps=3)(x, y)
    assert torch.equal(mi, bim)


def test_lenet_new_attacks_stay_in_ball_and_leave_the_model_alone(trained_lenet, fmnist_batch):
    x, y = fmnist_batch[0][:8], fmnist_batch[1][:8]
    before = {k: v.clone() for k, v in trained_lenet.state_dict().items()}
    for attack in new_attacks(trained_lenet):
        x_adv = attack(x, y)
        name = type(attack).__name__
        assert x_adv.shape == x.shape and not x_adv.requires_grad, name
        assert (x_adv - x).abs().max().item() <= EPS + 1e-6, name
        assert 0 <= x_adv.min().item() and x_adv.max().item() <= 1, name
        assert not trained_lenet.training, f"{name} switched the model to train mode"
        assert (x_adv != x).any(), f"{name} left every image unchanged"
    after = trained_lenet.state_dict()
    assert all(torch.equal(before[k], v) for k, v in after.items()), "parameters or buffers changed"
    assert all(p.grad is None for p in trained_lenet.parameters()), "an attack accumulated parameter gradients"


def test_apgd_counts_forward_passes(trained_lenet, fmnist_batch):
    x, y = fmnist_batch[0][:4], fmnist_batch[1][:4]
    attack = APGD(trained_lenet, 0.0, steps=3, restarts=2, eot=2)  # eps = 0: nothing is fooled by the attack
    attack(x, y)
    open_after_first = (~fooled(trained_lenet, x, y)).sum().item()
    assert attack.forward_passes == 2 * (3 + 1) * (4 + open_after_first)


# --------------------------------------------------------------------------------------------- EOT and the RNG
def test_objective_and_gradient_is_the_mean_over_draws():
    model = TinyNet(1, 4, 3, noise=0.5)
    x = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0, 1])
    torch.manual_seed(7)
    loss, logits, grad = APGD(model, EPS, eot=4).objective_and_gradient(x, y)
    single = APGD(model, EPS, eot=1)
    torch.manual_seed(7)
    draws = [single.objective_and_gradient(x, y) for _ in range(4)]
    for batched, parts in zip((loss, logits, grad), zip(*draws, strict=True), strict=True):
        assert torch.allclose(batched, torch.stack(parts).mean(0), atol=1e-6)
    torch.manual_seed(7)
    assert torch.allclose(single.input_gradient(x, y), draws[0][2])
    torch.manual_seed(7)
    targeted = APGD(model, EPS, targeted=True, eot=1).objective_and_gradient(x, y)
    assert torch.allclose(targeted[0], -draws[0][0]) and torch.allclose(targeted[2], -draws[0][2])


def test_random_attacks_are_reproducible_under_manual_seed(trained_lenet, fmnist_batch):
    x, y = fmnist_batch[0][:8], fmnist_batch[1][:8]
    for attack in [APGD(trained_lenet, EPS, steps=3), APGDT(trained_lenet, EPS, steps=2, n_target_classes=2),
                   GaussianNoise(trained_lenet, EPS)]:
        torch.manual_seed(3)
        a = attack(x, y)
        torch.manual_seed(3)
        b = attack(x, y)
        assert torch.equal(a, b), type(attack).__name__
        c = attack(x, y)
        assert not torch.equal(a, c), f"{type(attack).__name__} ignored the random generator"


def test_surrogate_argument_reaches_apgd(trained_lenet, fmnist_batch):
    x, y = fmnist_batch[0][:8], fmnist_batch[1][:8]
    torch.manual_seed(2)
    own = APGD(trained_lenet, EPS, steps=3)(x, y)
    torch.manual_seed(2)
    attack = APGD(trained_lenet, EPS, steps=3, grad="triangle")
    triangle = attack(x, y)
    assert not torch.equal(own, triangle) and attack.settings()["grad"]["name"] == "triangle"
    assert (triangle - x).abs().max().item() <= EPS + 1e-6


def test_mifgsm_does_not_touch_the_global_rng(trained_lenet, fmnist_batch):
    state = torch.get_rng_state()
    MIFGSM(trained_lenet, EPS, steps=2)(*fmnist_batch)
    assert torch.equal(state, torch.get_rng_state())


def test_stochastic_snn_with_eot(fmnist_batch):
    from spikeshield.models import create_model

    model = create_model("lenet", dataset="fashion_mnist", T=2, encoder="poisson").eval()  # He init: it spikes
    x, y = fmnist_batch[0][:4], fmnist_batch[1][:4]
    for attack in [APGD(model, EPS, steps=2, eot=3), MIFGSM(model, EPS, steps=2, eot=3)]:
        x_adv = attack(x, y)
        assert (x_adv - x).abs().max().item() <= EPS + 1e-6 and 0 <= x_adv.min() and x_adv.max() <= 1
        assert (x_adv != x).any()


# --------------------------------------------------------------------------------------------- the losses
def test_dlr_losses_by_hand_and_invariance():
    z = torch.tensor([[4.0, 1.0, 2.0, 0.0], [1.0, 3.0, 0.0, 2.0]])
    y = torch.tensor([0, 2])
    # sample 0: y top, runner-up 2, z_pi1 - z_pi3 = 4 - 1; sample 1: y = 0.0, top 3, z_pi1 - z_pi3 = 3 - 1
    assert torch.allclose(LOSSES["dlr"](z, y), torch.tensor([-(4 - 2) / 3, -(0 - 3) / 2]))
    assert torch.allclose(LOSSES["dlr"](3 * z + 5, y), LOSSES["dlr"](z, y), atol=1e-6)
    target = torch.tensor([1, 3])
    # denominator z_pi1 - (z_pi3 + z_pi4) / 2: sample 0: 4 - 0.5; sample 1: 3 - 0.5
    expected = torch.tensor([-(4 - 1) / 3.5, -(0 - 2) / 2.5])
    assert torch.allclose(targeted_dlr_loss(z, y, target), expected)
    assert torch.allclose(targeted_dlr_loss(2 * z - 1, y, target), expected, atol=1e-6)
    three = targeted_dlr_loss(z[:, :3], y, torch.tensor([1, 1]))  # 3 classes: z_pi4 := z_pi3
    assert torch.allclose(three, torch.tensor([-(4 - 1) / 3, -(0 - 3) / 3]))


def test_bad_settings_are_clear_errors(trained_lenet):
    with pytest.raises(ValueError, match="3 classes"):
        APGD(TinyNet(1, 2, 2), EPS, loss="dlr", steps=1)(torch.rand(2, 1, 2, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="restarts"):
        APGD(trained_lenet, EPS, restarts=0)
    with pytest.raises(ValueError, match="rho"):
        APGD(trained_lenet, EPS, rho=0)
    with pytest.raises(ValueError, match="steps"):
        APGD(trained_lenet, EPS, steps=0)
    with pytest.raises(ValueError, match="loss"):
        APGD(trained_lenet, EPS, loss="nosuchloss")
    with pytest.raises(ValueError, match="target"):
        APGDT(trained_lenet, EPS, targeted=True)
    with pytest.raises(ValueError, match="loss"):
        APGDT(trained_lenet, EPS, loss="ce")
    with pytest.raises(ValueError, match="n_target_classes"):
        APGDT(trained_lenet, EPS, n_target_classes=0)
    with pytest.raises(ValueError, match="decay"):
        MIFGSM(trained_lenet, EPS, decay=-1)
    with pytest.raises(ValueError, match="alpha"):
        MIFGSM(trained_lenet, EPS, alpha=2)
    with pytest.raises(ValueError, match="std"):
        GaussianNoise(trained_lenet, EPS, std=-0.1)
    with pytest.raises(ValueError, match="eps"):
        APGDT(trained_lenet, eps=1.5)


def test_gaussian_noise_statistics():
    model = TinyNet(1, 5, 3)
    x = torch.full((400, 1, 5, 5), 0.5)
    y = torch.zeros(400, dtype=torch.long)
    attack = GaussianNoise(model, 1.0, std=0.1)
    delta = attack(x, y) - x
    assert abs(delta.mean().item()) < 0.005 and abs(delta.std().item() - 0.1) < 0.005
    assert attack.forward_passes == 0
    bounded = GaussianNoise(model, 0.05, std=0.1)(x, y) - x
    assert bounded.abs().max().item() <= 0.05 + 1e-7
    assert 0.5 < (bounded.abs() > 0.05 - 1e-6).float().mean().item() < 0.75  # P(|N(0, 0.1)| > 0.05) = 0.617


# ------------------------------------------------------------------------------------------------------ registry
def test_registry_entries(trained_lenet):
    mi = make_attack("mifgsm", trained_lenet, EPS)
    assert isinstance(mi, MIFGSM) and (mi.steps, mi.alpha, mi.decay) == (5, pytest.approx(2 / 255), 1.0)
    ce = make_attack("apgd-ce", trained_lenet, EPS)
    assert type(ce) is APGD and (ce.steps, ce.restarts, ce.loss_name, ce.name) == (100, 1, "ce", "apgd-ce")
    dlr = make_attack("APGD_DLR", trained_lenet, EPS, eot=2)
    assert (dlr.loss_name, dlr.eot, dlr.name) == ("dlr", 2, "apgd-dlr")
    t = make_attack("apgd-t", trained_lenet, EPS)
    assert isinstance(t, APGDT) and (t.steps, t.n_target_classes, t.loss_name) == (100, 9, "dlr-targeted")
    noise = make_attack("gaussian", trained_lenet, 1.0)
    assert isinstance(noise, GaussianNoise) and noise.std == pytest.approx(20 / 255)
    assert parse_attack_list("APGD-CE, apgd_t,apgdce, pgd7") == ["apgd-ce", "apgd-t", "pgd7"]
    for attack in [mi, ce, dlr, t, noise]:
        json.dumps(attack.settings())
        assert attack.settings()["attack"] == type(attack).__name__
    assert t.settings()["n_target_classes"] == 9 and ce.settings()["rho"] == 0.75
    with pytest.raises(ValueError, match="apgd-ce"):
        make_attack("apgd-cee", trained_lenet, EPS)
