"""The Triton LIF and TA-LIF kernels (the GPU path, issue 21 item 4), checked on the CPU in Triton's interpreter
against the compiled CPU kernels: forward, BPTT backward, the PSC filter, the reset options, TA-LIF's threshold and
theta_v gradient, and every gradient mode."""

from __future__ import annotations

import pytest
import torch
from conftest import layer_grad

from spikeshield.neurons import LIF, PSC, TALIF, LIFParameters, lif, lif_kernels, lif_triton, talif_kernels
from spikeshield.neurons.gradients import MODEL_GRADIENTS, gradient_names
from spikeshield.neurons.surrogate import Triangle


@pytest.fixture
def interpreted(monkeypatch):
    """Triton's CPU interpreter for this test (the kernels are built on first use in each mode)."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert lif_triton.installed(), "Triton is part of the test set-up (make setup installs it)"


def _current(dtype=torch.float32, T=6, shape=(3, 37)):
    generator = torch.Generator().manual_seed(0)
    return (torch.rand(T, *shape, generator=generator, dtype=dtype) * 1.6 - 0.2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("tau_s", [None, 3.0])
@pytest.mark.parametrize("tau_m", [2.0, 1.0])  # 1.0: decay 0, no leak term
@pytest.mark.parametrize("detach_reset", [False, True])
def test_forward_and_backward_equal_the_cpu_kernels(interpreted, dtype, tau_s, tau_m, detach_reset):
    current = _current(dtype)
    p = LIFParameters(tau_m=tau_m, detach_reset=detach_reset)
    out, membrane = lif_triton.forward(current, p.decay, p.input_scale, p.theta, tau_s)
    ref_out, ref_membrane = lif_kernels.forward(current, p.decay, p.input_scale, p.theta, tau_s)
    assert 0 < out.count_nonzero() < out.numel()  # some neurons fire, some do not
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(membrane, ref_membrane)
    upstream = torch.randn_like(current)
    grad = lif_triton.backward(upstream, membrane, p.decay, p.input_scale, p.theta, detach_reset, tau_s, Triangle())
    ref = lif_kernels.backward(upstream, ref_membrane, p.decay, p.input_scale, p.theta, detach_reset, tau_s,
                               Triangle())
    torch.testing.assert_close(grad, ref)


def test_the_fused_neuron_takes_the_triton_path_when_it_is_supported(interpreted, monkeypatch):
    used = []
    monkeypatch.setattr(lif_triton, "forward", lambda *a: used.append(1) or lif_kernels.forward(*a))
    LIF()(_current())
    assert used and lif._kernels_for(_current()) is lif_triton
    monkeypatch.delenv("TRITON_INTERPRET")
    assert lif._kernels_for(_current()) is lif_kernels  # on a CPU without the interpreter: the numba kernels


@pytest.mark.parametrize("mode", [m for m in gradient_names() if m not in MODEL_GRADIENTS])  # ann: no LIF
def test_every_gradient_mode_gives_the_same_input_gradient_through_triton(interpreted, monkeypatch, mode):
    """A LIF + PSC layer's spikes and input gradient under each gradient mode: Triton (interpreted) = numba."""
    neuron = LIF(LIFParameters(tau_m=2.0), PSC(3.0))
    current, upstream = _current(), torch.randn(6, 3, 37, generator=torch.Generator().manual_seed(1))
    triton_out, triton_grad = layer_grad(neuron, current, upstream, mode)
    monkeypatch.setattr(lif_triton, "supported", lambda _: False)
    numba_out, numba_grad = layer_grad(neuron, current, upstream, mode)
    torch.testing.assert_close(triton_out, numba_out)
    torch.testing.assert_close(triton_grad, numba_grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("tau_s", [None, 3.0])
@pytest.mark.parametrize("detach_reset", [False, True])
def test_talif_forward_and_backward_equal_the_cpu_kernels(interpreted, dtype, tau_s, detach_reset):
    """TA-LIF: threshold, spikes, input gradient and the theta_v gradient (summed over the batch)."""
    generator = torch.Generator().manual_seed(2)
    current = _current(dtype, T=5, shape=(4, 3, 7))
    theta_v = torch.rand(3, 7, generator=generator, dtype=dtype) * 0.4
    nds = torch.rand(5, 3, 7, generator=generator, dtype=dtype) * 0.5
    p = LIFParameters(tau_m=2.0, detach_reset=detach_reset)
    args = (p.decay, p.input_scale, p.theta, theta_v, nds, tau_s)
    got, ref = lif_triton.talif_forward(current, *args), talif_kernels.forward(current, *args)
    assert 0 < got[0].count_nonzero() < got[0].numel()
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a, b)
    upstream = torch.randn(current.shape, generator=generator, dtype=dtype)
    rest = (theta_v, nds, p.decay, p.input_scale, detach_reset, tau_s, Triangle())
    grads = lif_triton.talif_backward(upstream, got[1], got[2], *rest)
    for a, b in zip(grads, talif_kernels.backward(upstream, ref[1], ref[2], *rest), strict=True):
        torch.testing.assert_close(a, b)


def test_the_talif_neuron_takes_the_triton_path_with_its_gradients(interpreted, monkeypatch):
    """TALIF's input and theta_v gradients through Triton (interpreted) equal those through numba."""
    neuron = TALIF((3, 7), steps=5)
    neuron.set_nds(torch.rand(5, 3, 7, generator=torch.Generator().manual_seed(3)) * 0.5)

    def grads():
        current = _current(T=5, shape=(4, 3, 7)).requires_grad_(True)
        neuron.zero_grad()
        (neuron(current) * torch.linspace(-1, 1, 7)).sum().backward()
        return current.grad, neuron.theta_v.grad.clone()

    used = []
    real = lif_triton.talif_forward
    monkeypatch.setattr(lif_triton, "talif_forward", lambda *a: used.append(1) or real(*a))
    through_triton = grads()
    assert used
    monkeypatch.setattr(lif_triton, "supported", lambda _: False)
    for a, b in zip(through_triton, grads(), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (the compiled Triton kernels)")
@pytest.mark.parametrize("neuron", ["lif", "talif"])
def test_compiled_triton_kernels_on_cuda_equal_the_step_loop(monkeypatch, neuron):
    """On a GPU: the compiled kernels' spikes, input gradient (and theta_v gradient) equal the PyTorch step loop's."""
    layer = (LIF(LIFParameters(tau_m=2.0), PSC(3.0)) if neuron == "lif" else TALIF((3, 7), steps=5)).cuda()
    current = _current(T=5, shape=(4, 3, 7)).cuda()

    def run():
        c = current.clone().requires_grad_(True)
        layer.zero_grad()
        out = layer(c)
        (out * torch.linspace(-1, 1, 7, device="cuda")).sum().backward()
        extra = [layer.theta_v.grad.clone()] if neuron == "talif" else []
        return [out.detach(), c.grad, *extra]

    assert lif_triton.supported(current)
    fused = run()
    monkeypatch.setattr(lif_triton, "supported", lambda _: False)
    monkeypatch.setattr(type(layer), "run", lambda self, c, s: super(type(self), self).run(c, s))
    for a, b in zip(fused, run(), strict=True):
        torch.testing.assert_close(a, b)
