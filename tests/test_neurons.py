"""Neuron dynamics, surrogates, gradient modes and recording."""

import math

import pytest
import torch

from spikeshield.neurons import (
    LIF,
    PSC,
    ArcTan,
    LIFParameters,
    Rectangle,
    Sigmoid,
    SpikingNeuron,
    StraightThrough,
    Triangle,
    gradient_mode,
    lif_kernels,
    lif_step,
    make_surrogate,
    psc_kernel,
    record,
)


def reference_lif(current, tau_m=5.0, theta=1.0, form="decay"):
    """An independent plain-Python LIF loop (golden trajectory)."""
    lam = 1 - 1 / tau_m
    c = 1.0 if form == "decay" else 1 / tau_m
    u, s, spikes, mems = 0.0, 0.0, [], []
    for i in current:
        u = lam * u * (1 - s) + c * i
        mems.append(u)
        s = 1.0 if u > theta else 0.0
        spikes.append(s)
    return spikes, mems


@pytest.mark.parametrize("form", ["decay", "tau"])
def test_lif_matches_golden_trajectory(form):
    current = [0.5, 0.65, 0.2, 1.5, 0.0, 0.9, 0.9, 0.3]  # no step lands within float32 rounding of theta
    if form == "tau":  # the time-constant form scales the input by 1/tau_m
        current = [5 * i for i in current]
    spikes_ref, mem_ref = reference_lif(current, form=form)
    assert 0 < sum(spikes_ref) < len(current)
    lif = LIF(LIFParameters(tau_m=5.0, form=form))
    x = torch.tensor(current).view(-1, 1, 1)
    with record(lif) as rec:
        spikes = lif(x)
    assert spikes.flatten().tolist() == spikes_ref
    assert torch.allclose(rec.membrane[""].flatten(), torch.tensor(mem_ref), atol=1e-6)


def test_lif_decay_form_fires_on_constant_input():
    # u: 0.6, 0.6*0.8+0.6=1.08 -> spike at t=1, reset, then 0.6 again
    spikes = LIF(LIFParameters(tau_m=5.0))(torch.full((4, 1), 0.6))
    assert spikes.flatten().tolist() == [0.0, 1.0, 0.0, 1.0]


def test_psc_kernel_matches_recursion():
    s = (torch.rand(7, 3, 4) > 0.5).float()
    a, expect = torch.zeros(3, 4), []
    for t in range(7):
        a = a + (s[t] - a) / 3.0
        expect.append(a)
    assert torch.allclose(PSC(3.0)(s), torch.stack(expect), atol=1e-6)
    assert torch.equal(psc_kernel(3, 2.0), torch.tensor([[0.5, 0, 0], [0.25, 0.5, 0], [0.125, 0.25, 0.5]]))


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
CASES = [dict(), dict(form="tau"), dict(detach_reset=True), dict(tau_m=math.inf), dict(tau_m=1.0),
         dict(surrogate="triangle"), dict(surrogate="arctan"), dict(surrogate="rectangle"), dict(theta=0.5)]


@pytest.mark.parametrize("synapse", [None, 3.0])
@pytest.mark.parametrize("params", CASES, ids=str)
@pytest.mark.parametrize("kernel", ["compiled", "torch"] + [f"torch-{d}" for d in DEVICES if d != "cpu"])
def test_fused_lif_equals_step_loop(params, synapse, kernel, monkeypatch):
    """The fast fused path gives the same spikes and input gradients as the step function under autograd
    (compiled CPU kernels, the PyTorch loop on CPU, and the PyTorch loop on CUDA when a GPU is present)."""
    if kernel == "torch":
        monkeypatch.setattr(lif_kernels, "supported", lambda *_: False)
    device = kernel.removeprefix("torch-") if kernel.startswith("torch-") else "cpu"
    torch.manual_seed(0)
    lif = LIF(LIFParameters(**params), PSC(synapse) if synapse else None)
    current = (torch.randn(6, 4, 3, 5, device=device) * 1.5).requires_grad_()
    out = lif(current)
    upstream = torch.randn_like(out)
    (grad_fused,) = torch.autograd.grad((out * upstream).sum(), current)
    ref, _ = SpikingNeuron.run(lif, current, lif.surrogate)
    (grad_ref,) = torch.autograd.grad((ref * upstream).sum(), current)
    assert torch.allclose(out, ref, atol=1e-6)
    assert torch.allclose(grad_fused, grad_ref, atol=1e-5), (grad_fused - grad_ref).abs().max()


def test_fused_lif_float64():
    lif = LIF()
    current = torch.randn(5, 2, 10, dtype=torch.float64, requires_grad=True)
    out = lif(current)
    assert out.dtype == torch.float64
    out.sum().backward()
    assert current.grad.dtype == torch.float64


def test_lif_step_is_pure():
    p = LIFParameters()
    x = torch.rand(3)
    a = lif_step(x, None, p, p.surrogate)
    b = lif_step(x, None, p, p.surrogate)
    assert all(torch.equal(u, v) for u, v in zip(a[:2], b[:2], strict=True))


@pytest.mark.parametrize(
    "surrogate,v,expected",
    [
        (Sigmoid(5.0), 0.0, 1.25),
        (ArcTan(2.0), 0.0, 1.0),
        (Triangle(1.0), 0.5, 0.5),
        (Triangle(0.5), 0.6, 0.0),
        (Rectangle(1.0), 0.49, 1.0),
        (Rectangle(1.0), 0.51, 0.0),
        (StraightThrough(), 3.0, 1.0),
    ],
)
def test_surrogate_values(surrogate, v, expected):
    assert surrogate.derivative(torch.tensor(v)).item() == pytest.approx(expected, rel=1e-6)


def test_surrogate_registry_errors():
    with pytest.raises(ValueError, match="unknown surrogate 'sigmod'.*sigmoid"):
        make_surrogate("sigmod")
    with pytest.raises(ValueError, match="takes parameters"):
        make_surrogate("triangle", width=2)
    with pytest.raises(ValueError, match="must be > 0"):
        make_surrogate("sigmoid", k=-1)
    assert make_surrogate({"name": "triangle", "gamma": 0.5}) == Triangle(0.5)


def test_gradient_mode_swaps_backward_only_and_restores():
    lif = LIF(LIFParameters(surrogate=Sigmoid(5.0)))
    current = torch.randn(5, 3, 8, requires_grad=True)

    def grad():
        (g,) = torch.autograd.grad(lif(current).sum(), current)
        return g

    own = grad()
    with gradient_mode("rectangle", a=0.1):
        swapped_out = lif(current)
        swapped = grad()
    assert torch.equal(swapped_out, lif(current)), "a gradient mode must not change the forward"
    assert not torch.allclose(own, swapped)
    with pytest.raises(RuntimeError):
        with gradient_mode("triangle"):
            raise RuntimeError("attack failed")
    assert torch.equal(grad(), own), "the mode outlived its block"


def test_recording_leaves_nothing_behind():
    lif = LIF(synapse=PSC(3.0))
    x = torch.rand(4, 2, 6)
    with record(lif) as rec:
        lif(x)
    assert set(rec.membrane) == {""} and set(rec.psc) == {"synapse"}
    assert rec.spikes[""].shape == (4, 2, 6)
    lif(x)  # outside the block nothing is recorded
    assert len(rec.membrane) == 1


def test_bad_parameters():
    with pytest.raises(ValueError, match="tau_m"):
        LIFParameters(tau_m=0.5)
    with pytest.raises(ValueError, match="form"):
        LIFParameters(form="exp")
    with pytest.raises(ValueError, match="tau_s"):
        PSC(0.1)


def test_kernel_thread_pool_keeps_torchs_thread_count():
    """Starting numba's pool for the fused LIF kernel must not raise PyTorch's thread count past OMP_NUM_THREADS
    (it reset it to the core count: oversubscribed, 5-25x slower small matmuls on a busy machine)."""
    import os
    import subprocess
    import sys

    code = ("import torch; from spikeshield.models import create_model; "
            "m = create_model('lenet', dataset='fashion_mnist', T=2); m(torch.rand(2, 1, 28, 28)); "
            "print(torch.get_num_threads())")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "1"


def test_half_precision_currents_are_integrated_in_float32():
    """Under autocast a neuron gets bfloat16 currents: it integrates them in float32 and returns bfloat16."""
    current = (torch.rand(5, 4, 30, generator=torch.Generator().manual_seed(0)) * 1.5).bfloat16()
    lif = LIF(LIFParameters(), PSC(3.0))
    out = lif(current)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, lif(current.float()).bfloat16())
