"""RandHet-SNN neurons (issue 17, item 1): random time constants per step or per forward pass, the Het ablation."""

from __future__ import annotations

import pytest
import torch
from scipy import stats

from spikeshield.models import create_model
from spikeshield.neurons import (
    BACKWARD_MODES,
    LIF,
    PSC,
    ArcTan,
    Het,
    LIFParameters,
    RandHet,
    RandHetParameters,
    SpikingNeuron,
    gradient_mode,
    lif_kernels,
    make_neuron,
)
from spikeshield.neurons.heterogeneous_kernels import LeakDraw, leak_table

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
MASK = (1 << 64) - 1


def splitmix64_level(seed: int, position: int) -> int:
    """The reference hash: lane ``position mod 4`` (16 bits) of Steele et al. 2014's SplitMix64 output for the state
    ``seed + (position div 4) * gamma``."""
    x = (seed + (position // 4) * 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return ((x ^ (x >> 31)) >> (16 * (position % 4))) & 0xFFFF


def test_drawn_time_constants_are_normal_and_independent():
    """``r = logit(k)`` over a million positions: standard normal (Kolmogorov-Smirnov), no correlation between
    neighbouring positions or between steps; another seed gives other numbers."""
    shape = torch.Size([4, 1000, 250])
    leaks = LeakDraw(2024, leak_table(1.0, torch.float64), True).materialize(shape)
    r = torch.logit(leaks)
    assert stats.kstest(r.flatten().numpy(), "norm").statistic < 2.5e-3
    flat = r.flatten()
    for a, b in ((flat[:-1], flat[1:]), (r[0].flatten(), r[1].flatten())):
        assert abs(torch.corrcoef(torch.stack([a, b]))[0, 1]) < 0.01
    other = LeakDraw(2025, leak_table(1.0, torch.float64), True).materialize(shape)
    assert (other != leaks).float().mean() > 0.99
    half, one = (torch.logit(leak_table(sigma, torch.float64)) for sigma in (0.5, 1.0))
    assert torch.allclose(half, 0.5 * one), "sigma scales r"


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
    # the draw itself: one seed per forward pass; the leak at position p of [T, B, N] (per step) or of [B, N] (once)
    # is the table's entry at a 16-bit lane of SplitMix64(seed + (p div 4) gamma), here in plain Python
    table = leak_table(1.0, x.dtype)
    for per_step in (True, False):
        torch.manual_seed(5)
        seed = int(torch.randint(0, 1 << 62, (), dtype=torch.int64))
        count = x.numel() if per_step else x[0].numel()
        z = table[[splitmix64_level(seed, p) for p in range(count)]].reshape(-1, *x.shape[1:])
        leaks = z if per_step else [z[0]] * x.shape[0]
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


@pytest.mark.parametrize("synapse", [None, 3.0])
@pytest.mark.parametrize("neuron", ["randhet", "randhet_fwd", "het"])
@pytest.mark.parametrize("kernel", ["compiled", "torch"] + [f"torch-{d}" for d in DEVICES if d != "cpu"])
def test_fused_kernel_equals_the_step_loop_on_the_same_draw(neuron, synapse, kernel, monkeypatch):
    """The fused default path gives the step loop's spikes and gradients (inputs, and Het's time constants) for the
    same seed: compiled CPU kernels, the PyTorch loop on CPU, and on CUDA when a GPU is present."""
    if kernel == "torch":
        monkeypatch.setattr(lif_kernels, "supported", lambda *_: False)
    device = kernel.removeprefix("torch-") if kernel.startswith("torch-") else "cpu"
    layer = make_neuron(neuron, (3, 5), PSC(synapse) if synapse else None).to(device)
    if neuron == "het":
        with torch.no_grad():
            layer.r.normal_(generator=torch.Generator(device).manual_seed(1))
    current = (currents(2, (6, 4, 3, 5)).float().to(device) * 1.5 - 0.5).requires_grad_()
    torch.manual_seed(4)
    out = layer(current)
    upstream = torch.randn_like(out)
    wrt = [current] + ([layer.r] if neuron == "het" else [])
    fused = torch.autograd.grad((out * upstream).sum(), wrt)
    torch.manual_seed(4)
    ref, _ = SpikingNeuron.run(layer, current, layer.surrogate)
    loop = torch.autograd.grad((ref * upstream).sum(), wrt)
    assert torch.allclose(out, ref, atol=1e-6)
    for a, b in zip(fused, loop, strict=True):
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    assert fused[0].abs().sum() > 0


@pytest.mark.parametrize("per_step", [True, False])
@pytest.mark.parametrize("shape", [(3, 1, 7), (5, 3, 1367), (2, 1, 33001)])
def test_drawn_leaks_in_the_kernel_equal_the_materialized_draw_at_any_alignment(shape, per_step):
    """The kernel's in-place draw (four leaks per hash over aligned groups, partial groups at the ends) gives the
    materialized draw's membrane and gradients when rows, blocks and backward chunks start mid-group."""
    from spikeshield.neurons import heterogeneous_kernels as hk

    current = currents(5, shape).float() * 1.5 - 0.5
    draw = LeakDraw(987654321, leak_table(1.0, torch.float32), per_step)
    leaks = draw.materialize(current.shape)
    out, membrane = hk.forward(current, draw, 0.5, None)
    ref_out, ref_membrane = hk.forward(current, leaks, 0.5, None)
    assert torch.equal(membrane, ref_membrane) and torch.equal(out, ref_out)
    upstream = torch.randn(shape, generator=torch.Generator().manual_seed(6))
    grad, _ = hk.backward(upstream, membrane, draw, None, 0.5, None, ArcTan(2.0))
    ref_grad, _ = hk.backward(upstream, membrane, leaks, None, 0.5, None, ArcTan(2.0))
    assert torch.equal(grad, ref_grad) and grad.abs().sum() > 0


def test_fused_kernel_float64_and_one_seed_per_forward_pass():
    """Float64 stays float64, and a forward pass takes exactly one int64 from the global generator (its seed)."""
    x = currents(3, (5, 2, 10)).requires_grad_()
    for per_step in (True, False):
        layer = RandHet(RandHetParameters(sigma=1.0, per_step=per_step))
        out = layer(x)
        assert out.dtype == torch.float64
        out.sum().backward()
        assert x.grad.dtype == torch.float64
        torch.manual_seed(0)
        torch.randint(0, 1 << 62, (), dtype=torch.int64)
        expected_next = torch.randn(3)
        torch.manual_seed(0)
        layer(x)
        assert torch.equal(torch.randn(3), expected_next)
