"""The spiking purifier and its losses (issue 19, item 4; METHODS 3)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spikeshield.defenses.purification import (
    Purifier,
    asymmetric,
    charbonnier,
    purification_loss,
    purifier,
    reconstruction,
    total_variation,
)
from spikeshield.models import build_model
from spikeshield.neurons import SpikingNeuron, gradient_mode


def test_full_size_purifier_has_cbdnets_four_million_parameters():
    model = purifier(dataset="cifar10", T=1)
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(4.37, abs=0.01)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert sum(isinstance(m, SpikingNeuron) for m in model.modules()) == 4 + 16  # estimator + U-Net neurons


@pytest.mark.parametrize("dataset", ["fashion_mnist", "cifar10", "tiny_imagenet"])
def test_purifier_maps_images_to_images_in_range(dataset):
    model = build_model({"name": "purifier", "dataset": dataset, "T": 2, "width": 0.125}).eval()
    info = model.info
    x = torch.rand(2, info.channels, info.size, info.size)
    out = model(x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    x_hat, sigma = model.denoise(x)
    assert sigma.shape == x.shape and torch.equal(out, x_hat.clamp(0, 1))


def test_output_is_the_input_plus_a_residual_that_starts_at_zero():
    model = purifier(T=2, width=0.125)
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(model(x), x)
    torch.nn.init.normal_(model.dec1[-1][0].weight, std=0.1)
    x_hat, _ = model.denoise(x)
    assert not torch.equal(x_hat, x)


def test_every_gradient_mode_reaches_the_purifier_neurons():
    model = purifier(T=2, width=0.125).eval()
    torch.nn.init.normal_(model.dec1[-1][0].weight, std=0.1)  # as after training (it starts at zero)
    x = torch.rand(2, 1, 28, 28, requires_grad=True)
    (own,) = torch.autograd.grad(model.denoise(x)[0].sum(), x)
    with gradient_mode("rga"):
        (rga,) = torch.autograd.grad(model.denoise(x)[0].sum(), x)
    assert not torch.allclose(own, rga)
    twin = build_model({**model.config, "ann": True})
    assert isinstance(twin, Purifier) and twin.T == 1
    assert not any(isinstance(m, SpikingNeuron) for m in twin.modules())


def test_bad_purifier_arguments_are_refused():
    with pytest.raises(ValueError, match="codes images directly"):
        purifier(encoder="poisson")
    with pytest.raises(ValueError, match="synapse"):
        purifier(synapse=3.0)
    with pytest.raises(ValueError, match="width"):
        purifier(width=0)
    with pytest.raises(ValueError, match="image size"):  # 224 / 4 ok; check a size that is not a multiple of 4
        Purifier(type("I", (), {"size": 30, "name": "odd", "channels": 1})(), None, 1, 1.0, {})


def test_charbonnier_and_reconstruction_losses():
    x = torch.zeros(1, 1, 2, 2)
    x_hat = torch.full_like(x, 0.3)
    assert charbonnier(x_hat, x).item() == pytest.approx((0.09 + 1e-6) ** 0.5)
    assert charbonnier(x, x).item() == pytest.approx(1e-3)
    assert reconstruction(x_hat, x, beta=0.25).item() == pytest.approx(0.25 * (0.09 + 1e-6) ** 0.5 + 0.75 * 0.09)


def test_asymmetric_loss_penalises_under_estimation_as_eq_8_says():
    sigma = torch.full((1, 1, 2, 2), 0.5)
    under = asymmetric(sigma - 0.1, sigma, gamma=0.3)
    over = asymmetric(sigma + 0.1, sigma, gamma=0.3)
    assert under.item() == pytest.approx(0.7 * 0.01) and over.item() == pytest.approx(0.3 * 0.01)
    assert under > over


def test_total_variation_and_the_combined_loss():
    flat = torch.full((1, 1, 4, 4), 0.2)
    assert total_variation(flat).item() == 0
    ramp = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 1, 4, 4)
    assert total_variation(ramp).item() == pytest.approx(1.0)
    x = torch.rand(2, 1, 4, 4)
    noisy = (x + 0.1).clamp(0, 1)
    x_hat, sigma = x + 0.05, (noisy - x).abs()
    early = purification_loss(x_hat, sigma, x, noisy, charbonnier_only=True)
    assert early.item() == pytest.approx((charbonnier(x_hat, x) + 0.05 * total_variation(sigma)).item())
    late = purification_loss(x_hat, sigma, x, noisy, beta=0.5)
    assert late.item() == pytest.approx((reconstruction(x_hat, x, 0.5) + 0.05 * total_variation(sigma)).item())
    with pytest.raises(ValueError, match="gamma"):
        purification_loss(x_hat, sigma, x, noisy, gamma=0.7)


def test_purifier_learns_to_remove_noise_in_a_few_steps(fmnist_batch):
    torch.manual_seed(0)
    model = purifier(T=2, width=0.25).train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    x = fmnist_batch[0]
    noisy = (x + torch.sign(torch.randn_like(x)) * 32 / 255).clamp(0, 1)
    assert torch.equal(model(noisy), noisy)  # untrained: the identity
    losses = []
    for _ in range(40):
        x_hat, sigma = model.denoise(noisy)
        loss = purification_loss(x_hat, sigma, x, noisy)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        assert F.mse_loss(model(noisy), x) < 0.85 * F.mse_loss(noisy, x)
    assert losses[-1] < 0.85 * losses[0]


def test_every_purifier_layer_fires_at_initialisation(fmnist_batch):
    from spikeshield.neurons import record

    model = purifier(T=4, width=0.125)
    with record(model) as rec:
        model(fmnist_batch[0])
    rates = [float(s.mean()) for s in rec.spikes.values()]
    assert len(rates) == 20 and min(rates) > 0.01, rates  # without calibrate() the middle block is silent
