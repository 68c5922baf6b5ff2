"""The unrolled attacker gradients (HART, HART-MIX, PDSG, ASSG), the ANN clamp twin and the unclamped threat model."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import layer_grad

from spikeshield.attacks import APGD, FAB, FGSM, PGD, Square, make_attack
from spikeshield.evaluation import evaluate
from spikeshield.models import create_model
from spikeshield.models.ann import QuantisedClamp, ann_twin
from spikeshield.neurons import LIF, PSC, LIFParameters, SpikingNeuron, Triangle, gradient_mode, lif_step
from spikeshield.neurons.gradients import ASSG, frozen_statistics, make_gradient
from spikeshield.report.tables import markdown_table

EPS = 8 / 255


def lif_by_hand(current, p: LIFParameters, slope, detach: bool, tau_s=None):
    """The LIF layer looped by hand with a given surrogate slope function ``slope(t, v)`` (our reference)."""

    class Spike(torch.autograd.Function):
        @staticmethod
        def forward(ctx, v, t):
            ctx.save_for_backward(v)
            ctx.t = t
            return (v > 0).to(v.dtype)

        @staticmethod
        def backward(ctx, grad):
            (v,) = ctx.saved_tensors
            return grad * slope(ctx.t, v), None

    u_prev = s_prev = None
    spikes = []
    for t in range(current.shape[0]):
        u = current[t] * p.input_scale
        if u_prev is not None:
            u_in, s_in = (u_prev.detach(), s_prev.detach()) if detach else (u_prev, s_prev)
            u = u + p.decay * u_in * (1 - s_in)
        s = Spike.apply(u - p.theta, t)
        spikes.append(s)
        u_prev, s_prev = u, s
    out = torch.stack(spikes)
    return PSC(tau_s).filter(out) if tau_s else out


class StepOnly(SpikingNeuron):
    """A new neuron with nothing but a step function (a LIF with threshold 0.8): every unrolled mode must work."""

    def __init__(self) -> None:
        super().__init__(None)
        self.p = LIFParameters(tau_m=4.0, theta=0.8)
        self.surrogate = self.p.surrogate

    def step(self, current, state, surrogate):
        return lif_step(current, state, self.p, surrogate)


# ----------------------------------------------------------------------------------------------------- HART
@pytest.mark.parametrize("tau_s", [None, 3.0])
def test_hart_is_the_time_mean_of_the_detached_triangle_gradient(tau_s):
    p = LIFParameters(tau_m=5.0)
    current = torch.randn(4, 3, 10, dtype=torch.float64) + 0.6
    upstream = torch.randn_like(current)
    out, g = layer_grad(LIF(p, tau_s and PSC(tau_s)), current, upstream, {"name": "hart", "g": 0.5})
    x = current.clone().requires_grad_(True)
    ref = lif_by_hand(x, p, lambda t, v: Triangle(0.5).derivative(v), detach=True, tau_s=tau_s)
    (per_step,) = torch.autograd.grad((ref * upstream).sum(), x)
    torch.testing.assert_close(g, per_step.mean(0, keepdim=True).expand_as(g))
    assert torch.equal(out, LIF(p, tau_s and PSC(tau_s))(current))


def test_hart_mix_averages_hart_and_bptt():
    p = LIFParameters(tau_m=3.0)
    current = torch.randn(5, 2, 8, dtype=torch.float64) + 0.5
    upstream = torch.randn_like(current)
    lif = LIF(p, PSC(2.0))
    hart = layer_grad(lif, current, upstream, "hart")[1]
    bptt = layer_grad(lif, current, upstream, "triangle")[1]
    mix = layer_grad(lif, current, upstream, "hart-mix")[1]
    torch.testing.assert_close(mix, 0.5 * (hart + bptt))


# ----------------------------------------------------------------------------------------------------- PDSG
@pytest.mark.parametrize("conv", [True, False])
def test_pdsg_uses_a_gaussian_with_the_per_sample_std_of_the_membrane(conv):
    p = LIFParameters(tau_m=5.0)
    if conv:  # [T, B, C, H, W]: one std per (sample, channel), over time and positions
        current = torch.randn(3, 4, 2, 5, 5, dtype=torch.float64) + 0.5
        current[:, :, 1] *= 3  # channels with different spreads
    else:  # [T, B, N]: one std per sample, over time and units
        current = torch.randn(3, 4, 7, dtype=torch.float64) + 0.5
    current[:, 1] *= 2  # samples with different spreads
    upstream = torch.randn_like(current)
    lif = LIF(p)
    _, g = layer_grad(lif, current, upstream, "pdsg")
    membrane = lif.exact(current)[1]
    if conv:
        s = torch.stack([torch.stack([membrane[:, b, c].std(correction=0) for c in range(2)]) for b in range(4)])
        s = s.view(4, 2, 1, 1)
    else:
        s = torch.stack([membrane[:, b].std(correction=0) for b in range(4)]).view(4, 1)

    def gaussian(t, v):
        return torch.exp(-((v - s / 2) ** 2) / (2 * s**2)) / (math.sqrt(2 * math.pi) * s)

    x = current.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad((lif_by_hand(x, p, gaussian, detach=False) * upstream).sum(), x)
    torch.testing.assert_close(g, ref)


# ----------------------------------------------------------------------------------------------------- ASSG
def test_assg_sharpness_follows_its_running_statistics():
    p = LIFParameters(tau_m=5.0)
    current = torch.randn(3, 2, 6, dtype=torch.float64) + 0.7
    upstream = torch.randn_like(current)
    lif = LIF(p)
    mode = ASSG(A=0.43).fresh()
    a = 2 * math.tan(math.pi * 0.43 / 2) / math.pi
    membrane = lif.exact(current)[1]
    v = membrane - p.theta
    m, d = torch.ones_like(v), torch.zeros_like(v)
    for _ in range(3):  # three gradient calls of one attack: the EMAs move each time
        _, g = layer_grad(lif, current, upstream, mode)
        m = 0.9 * m + 0.1 * v.abs()
        d = 0.9 * d + 0.1 * (v.abs() - m).abs()
        alpha = a / (m + 1.5 * d + 1e-4)

        def arctan(t, vt, alpha=alpha):
            return (alpha[t] / 2) / (1 + (math.pi / 2 * alpha[t] * vt) ** 2)

        x = current.clone().requires_grad_(True)
        (ref,) = torch.autograd.grad((lif_by_hand(x, p, arctan, detach=False) * upstream).sum(), x)
        torch.testing.assert_close(g, ref)
    with frozen_statistics():  # EOT draws after the first: same statistics, no update
        frozen = layer_grad(lif, current, upstream, mode)[1]
        assert torch.equal(frozen, layer_grad(lif, current, upstream, mode)[1])
    torch.testing.assert_close(frozen, g)


def test_assg_statistics_start_fresh_for_each_attack_call():
    model = create_model("lenet", T=2).eval()
    x, y = torch.rand(3, 1, 28, 28), torch.tensor([0, 1, 2])
    attack = FGSM(model, EPS, grad="assg")
    torch.testing.assert_close(attack(x, y), attack(x, y))  # no statistics carried between calls
    assert attack.grad.stats == {}
    assert make_gradient("assg") == ASSG() and attack.settings()["grad"] == "assg"


# ------------------------------------------------------------------------------------- any neuron, any mode
@pytest.mark.parametrize("mode", ["hart", "hart-mix", "pdsg", "assg", "triangle", "bptr"])
def test_a_step_only_neuron_gets_every_unrolled_mode(mode):
    current = torch.randn(4, 2, 6, dtype=torch.float64) + 0.5
    upstream = torch.randn_like(current)
    neuron = StepOnly()
    out, g = layer_grad(neuron, current, upstream, mode)
    assert torch.equal(out, neuron(current)) and torch.isfinite(g).all() and g.abs().sum() > 0


@pytest.mark.parametrize("grad", ["hart", "pdsg", "assg", "ann-clamp"])
def test_modes_leave_no_trace_after_an_attack_even_when_it_raises(grad):
    model = create_model("lenet", T=2).eval()
    x, y = torch.rand(2, 1, 28, 28), torch.tensor([3, 4])
    xr = x.clone().requires_grad_(True)
    before = model(xr)
    (g_before,) = torch.autograd.grad(F.cross_entropy(before, y), xr)
    attack = PGD(model, EPS, steps=2, grad=grad)
    attack(x, y)
    attack.loss_fn = lambda logits, yy: 1 / 0  # fails inside the mode
    with pytest.raises(ZeroDivisionError):
        attack(x, y)
    after = model(xr)
    (g_after,) = torch.autograd.grad(F.cross_entropy(after, y), xr)
    assert torch.equal(before, after) and torch.equal(g_before, g_after)


# ------------------------------------------------------------------------------------------- ANN clamp twin
def test_ann_clamp_twin_quantises_with_a_straight_through_floor():
    q = QuantisedClamp()
    x = torch.tensor([-0.5, 0.0, 0.2, 0.3, 0.99, 1.5], requires_grad=True)
    out = q(x)
    assert torch.equal(out.detach(), torch.tensor([0.0, 0.0, 1 / 8, 2 / 8, 7 / 8, 1.0]))
    out.sum().backward()
    assert torch.equal(x.grad, torch.tensor([0.0, 1.0, 1.0, 1.0, 1.0, 0.0]))  # the clamp's gradient only
    model = create_model("lenet", T=2)
    twin = ann_twin(model, "clamp")
    assert any(isinstance(m, QuantisedClamp) for m in twin.modules()) and twin.config["ann"] == "clamp"
    attack = make_attack("fgsm@ann-clamp", model, EPS)
    assert attack.name == "fgsm@ann-clamp" and attack.settings()["grad"] == "ann-clamp"
    with pytest.raises(ValueError, match="ann must be"):
        create_model("lenet", ann="tanh")


# -------------------------------------------------------------------------------------- the threat model
def test_unclamped_attacks_leave_zero_pixels_and_results_say_so(trained_lenet, fmnist_batch):
    x, y = (t[:8] for t in fmnist_batch)
    assert (x == 0).any()
    for attack in (PGD(trained_lenet, EPS, steps=2, clamp=False), APGD(trained_lenet, EPS, steps=2, clamp=False),
                   Square(trained_lenet, EPS, n_queries=5, clamp=False), FAB(trained_lenet, EPS, steps=2, clamp=False)):
        x_adv = attack(x, y)
        assert (x_adv - x).abs().max() <= EPS + 1e-6 and attack.settings()["clamp"] is False
        if not isinstance(attack, FAB):
            assert x_adv.min() < 0, type(attack).__name__
    with pytest.raises(ValueError, match="pixel values must lie in"):  # the model still refuses it outside attacks
        trained_lenet(x - EPS)
    result = evaluate(trained_lenet, x, y, attacks="fgsm,pgd7", eps=EPS, clamp=False, progress=False)
    assert result.threat_model == "unclamped" and all(not s["clamp"] for s in result.attacks.values())
    assert "non-standard" in markdown_table(result)
    standard = evaluate(trained_lenet, x, y, attacks="fgsm,pgd7", eps=EPS, progress=False)
    assert standard.threat_model == "clamped" and "non-standard" not in markdown_table(standard)
    assert sum(result.broken_by.values()) == round(len(y) * (result.clean_acc - result.worst_case_acc))
    with pytest.raises(ValueError, match="clamp must be"):
        PGD(trained_lenet, EPS, clamp="no")


@pytest.mark.parametrize("grad", ["hart", "hart-mix", "pdsg", "assg", "bptr", "rga"])
def test_poisson_coded_model_forward_unchanged_under_every_mode(grad):
    model = create_model("lenet", T=2, encoder="poisson").eval()
    x, y = torch.rand(2, 1, 28, 28), torch.tensor([1, 2])
    torch.manual_seed(5)
    own = model(x)
    torch.manual_seed(5)
    xr = x.clone().requires_grad_(True)
    with gradient_mode(grad):
        out = model(xr)
        (g,) = torch.autograd.grad(F.cross_entropy(out, y), xr)
    assert torch.equal(out.detach(), own) and torch.isfinite(g).all()
    if grad not in ("bptr", "rga"):  # the rate modes pass nothing through layers that never fire (untrained net)
        assert g.abs().sum() > 0
