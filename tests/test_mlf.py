"""Multi-level firing neurons (METHODS 3): dynamics, the K = 1 LIF limit, and every attacker gradient mode."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spikeshield.attacks import PGD
from spikeshield.models import create_model
from spikeshield.models.ann import QuantisedClamp, ann_twin
from spikeshield.neurons import LIF, MLF, LIFParameters, MLFParameters, gradient_mode
from spikeshield.neurons.gradients import RGA, gradient_names


def test_constant_current_fires_the_sub_neurons_it_reaches():
    # I = 2: V = 0.6 and 1.6 fire every step; V = 2.6 integrates 2, 2.5, 2.625 (fires, resets), 2
    out = MLF()(torch.full((4, 1, 1), 2.0))
    assert out.flatten().tolist() == [2.0, 2.0, 3.0, 2.0]
    # I = 1: only V = 0.6 is reached (the others saturate at 1 / (1 - 0.25) = 1.33)
    assert MLF()(torch.full((6, 1, 1), 1.0)).flatten().tolist() == [1.0] * 6


@pytest.mark.parametrize("levels", [1, 2, 3, 5])
def test_output_counts_sub_neuron_spikes_up_to_k(levels):
    out = MLF(MLFParameters(levels=levels))(torch.randn(4, 16, 30) * 4)
    assert out.min() >= 0 and out.max() <= levels
    assert torch.equal(out, out.round())
    assert out.max() == levels  # strong inputs reach the top level


def test_k1_is_a_lif_with_that_threshold_and_decay():
    current = (torch.randn(6, 8, 20) * 1.5).requires_grad_(True)
    mlf = MLF(MLFParameters(levels=1, theta=0.6, decay=0.25, surrogate="rectangle"))
    lif = LIF(LIFParameters(tau_m=1 / (1 - 0.25), theta=0.6, surrogate="rectangle"))
    a, b = mlf(current), lif(current)
    assert torch.equal(a, b)
    weights = torch.randn_like(a)
    (ga,) = torch.autograd.grad((a * weights).sum(), current)
    (gb,) = torch.autograd.grad((b * weights).sum(), current)
    torch.testing.assert_close(ga, gb)


def test_bad_parameters_are_refused():
    for bad in ({"levels": 0}, {"levels": 1.5}, {"decay": 1.0}, {"theta": -1}):
        with pytest.raises(ValueError):
            MLFParameters(**bad)
    with pytest.raises(ValueError, match="neuron 'mlf'"):
        create_model("lenet", neuron="mlf", neuron_params={"tresholds": 3})


def test_rga_sums_the_factor_of_each_sub_neuron():
    mlf = MLF()  # thresholds 0.6, 1.6, 2.6; decay 0.25: g = (1 - 0.2 + 0.05) / 1.25 = 0.68 on [0.75, 2]
    current = torch.full((4, 1, 1), 1.5)  # Ibar = 2.5, 0.94, 0.58 -> 0, 0.68, 0.2
    factor = RGA().factor(mlf, current)
    assert factor.item() == pytest.approx(0.68 + 0.2)


@pytest.mark.parametrize("grad", [g for g in gradient_names() if g != "own"])
def test_every_gradient_mode_reaches_mlf_neurons_and_keeps_the_forward(grad):
    torch.manual_seed(0)
    model = create_model("lenet", neuron="mlf", T=4).eval()
    x = torch.rand(3, 1, 28, 28)
    y = torch.tensor([0, 1, 2])
    plain = model(x)
    attack = PGD(model, eps=8 / 255, alpha=2 / 255, steps=1, grad=grad)
    with attack.gradient_context():
        xr = x.clone().requires_grad_(True)
        logits = attack.model(xr)
        (g,) = torch.autograd.grad(F.cross_entropy(logits, y), xr)
    assert torch.equal(logits.detach(), plain)
    assert g.abs().sum() > 0, grad


def test_surrogate_swap_changes_the_gradient_of_every_level():
    torch.manual_seed(1)
    current = (torch.randn(4, 5, 7) * 3).requires_grad_(True)
    mlf = MLF()
    (own,) = torch.autograd.grad(mlf(current).sum(), current)
    with gradient_mode("triangle", gamma=0.5):
        (swapped,) = torch.autograd.grad(mlf(current).sum(), current)
    assert not torch.allclose(own, swapped)


def test_ann_clamp_twin_clamps_to_the_number_of_levels():
    model = create_model("lenet", neuron="mlf", T=4, neuron_params={"levels": 2})
    clamps = [m for m in ann_twin(model, "clamp").modules() if isinstance(m, QuantisedClamp)]
    assert clamps and all(m.high == 2 for m in clamps)
    assert QuantisedClamp(high=2)(torch.tensor([5.0, 1.3, -1.0])).tolist() == [2.0, 1.25, 0.0]


@pytest.mark.parametrize("detach_reset", [False, True])
def test_fused_path_equals_the_step_loop(detach_reset):
    torch.manual_seed(2)
    mlf = MLF(MLFParameters(levels=3, detach_reset=detach_reset))
    current = (torch.randn(5, 4, 3, 6) * 2).requires_grad_(True)
    fused, _ = mlf.run(current, mlf.surrogate)
    looped = mlf.unroll(current, lambda t: mlf.surrogate)
    assert torch.equal(fused, looped)
    weights = torch.randn_like(fused)
    (a,) = torch.autograd.grad((fused * weights).sum(), current)
    (b,) = torch.autograd.grad((looped * weights).sum(), current)
    torch.testing.assert_close(a, b)
