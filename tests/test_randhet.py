"""RandHet-SNN neurons (issue 17, item 1): random time constants per step or per forward pass, the Het ablation."""

from __future__ import annotations

import pytest
import torch

from spikeshield.models import create_model
from spikeshield.neurons import (
    BACKWARD_MODES,
    LIF,
    ArcTan,
    Het,
    LIFParameters,
    RandHet,
    RandHetParameters,
    gradient_mode,
    make_neuron,
)


def currents(seed: int = 0, shape=(6, 3, 20)) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2


def test_sigma_zero_is_the_plain_lif_with_tau_2_and_threshold_one_half():
    lif = LIF(LIFParameters(tau_m=2.0, theta=0.5, form="tau", surrogate=ArcTan(2.0), detach_reset=True))
    plain = RandHet(RandHetParameters(sigma=0.0))
    assert not plain.is_stochastic
    for per_step in (True, False):
        plain.p = RandHetParameters(sigma=0.0, per_step=per_step)
        a = currents().requires_grad_(True)
        b = a.detach().clone().requires_grad_(True)
        out_a, out_b = plain(a), lif(b)
        assert torch.equal(out_a, out_b)
        w = torch.randn_like(out_a)
        (ga,) = torch.autograd.grad((out_a * w).sum(), a)
        (gb,) = torch.autograd.grad((out_b * w).sum(), b)
        assert torch.allclose(ga, gb, atol=1e-12)


def test_the_time_constant_is_drawn_per_step_or_per_forward_pass():
    """``r`` drawn with the global generator: per step, per sample and neuron (RandHet) or once (RandHet*)."""
    x = currents()
    for per_step in (True, False):
        layer = RandHet(RandHetParameters(sigma=1.0, per_step=per_step))
        assert layer.is_stochastic
        torch.manual_seed(3)
        out = layer(x)
        torch.manual_seed(3)
        assert torch.equal(out, layer(x)), "reproducible under manual_seed"
        assert not torch.equal(out, layer(x)), "two calls draw differently"
    # the draw itself: with the generator at seed s, step t uses the t-th randn (per step) or only the first
    torch.manual_seed(5)
    draws = [torch.sigmoid(torch.randn(x.shape[1:], dtype=x.dtype)) for _ in range(x.shape[0])]
    for per_step in (True, False):
        leaks = draws if per_step else [draws[0]] * x.shape[0]
        u, expected = None, []
        for t in range(x.shape[0]):
            v = (1 - leaks[t]) * x[t] + (0 if u is None else leaks[t] * u * (1 - expected[-1]))
            expected.append((v > 0.5).to(x.dtype))
            u = v
        torch.manual_seed(5)
        got = RandHet(RandHetParameters(sigma=1.0, per_step=per_step))(x)
        assert torch.equal(got, torch.stack(expected))


@pytest.mark.parametrize("mode", sorted(BACKWARD_MODES))
@pytest.mark.parametrize("per_step", [True, False])
def test_every_gradient_mode_works_with_the_forwards_own_draw(mode, per_step):
    """Under a mode the value is the plain forward's (same seed) and the gradient is finite; the RNG ends where a
    plain forward leaves it."""
    layer = RandHet(RandHetParameters(sigma=1.0, per_step=per_step))
    x = currents(1).requires_grad_(True)
    torch.manual_seed(9)
    plain = layer(x)
    after_plain = torch.get_rng_state()
    torch.manual_seed(9)
    with gradient_mode(mode):
        out = layer(x)
        (g,) = torch.autograd.grad(out.sum(), x)
    assert torch.equal(out, plain) and torch.isfinite(g).all()
    assert torch.equal(torch.get_rng_state(), after_plain)


def test_het_learns_a_deterministic_time_constant_per_neuron():
    layer = make_neuron("het", (20,))
    assert isinstance(layer, Het) and not layer.is_stochastic and layer.r.shape == (20,)
    x = currents().float()
    out = layer(x)
    assert torch.equal(out, layer(x))
    (grad,) = torch.autograd.grad(out.sum() + layer(x).mean(), layer.r)
    assert grad.abs().sum() > 0, "the time constants must be trainable"
    with pytest.raises(ValueError, match="bad parameters"):
        make_neuron("randhet", (20,), sigma=1.0, per_step=False)  # randhet_fwd is the per-forward variant
    with pytest.raises(ValueError, match="sigma"):
        RandHetParameters(sigma=-1.0)


@pytest.mark.parametrize("neuron", ["randhet", "randhet_fwd", "het"])
def test_models_declare_their_randomness_and_keep_gradients_in_eval_mode(neuron):
    model = create_model("lenet", dataset="fashion_mnist", neuron=neuron, T=3).eval()
    assert model.is_stochastic == (neuron != "het")
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    (g,) = torch.autograd.grad(model(x).logsumexp(1).sum(), x)
    assert g.abs().sum() > 0
    same = torch.equal(model(x), model(x))
    assert same == (neuron == "het")
