"""Backward modes on stochastic neurons and batch-independent statistics (issue 16, items 3 and 4).

Every attacker's backward mode must differentiate the draw its forward made (DESIGN 7): the gradient of a random
neuron under a mode equals that of the deterministic neuron with the draw frozen, and the global RNG advances as in a
plain forward. PDSG's statistic is per sample, so a sample's gradient does not depend on its batch-mates.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spikeshield.models import create_model
from spikeshield.neurons import (
    BACKWARD_MODES,
    LIF,
    PSC,
    LIFParameters,
    RateParameters,
    Sigmoid,
    SpikingNeuron,
    gradient_mode,
    spike,
)
from spikeshield.neurons.gradients import DrawReplay

T, B, N = 4, 3, 6
THETA = 0.8


class FixedDecayLIF(SpikingNeuron):
    """A LIF layer (decay form, hard reset) with a fixed per-neuron leak ``decay`` of one sample's shape."""

    def __init__(self, decay: torch.Tensor | None = None, synapse: PSC | None = None) -> None:
        super().__init__(synapse)
        self.decay, self.surrogate = decay, Sigmoid()

    def draw_decay(self, current: torch.Tensor) -> torch.Tensor:
        return self.decay

    def step(self, current, state, surrogate):
        if state is None:
            decay, u = self.draw_decay(current), current
        else:
            u_prev, s_prev, decay = state
            u = current + decay * u_prev * (1 - s_prev)
        s = spike(u - THETA, surrogate)
        return s, u, (u, s, decay)

    def rate_parameters(self) -> RateParameters:
        return RateParameters(decay=self.decay, theta=THETA)


class RandomDecayLIF(FixedDecayLIF):
    """The same layer with a per-neuron leak drawn from the global torch RNG once per forward (a RandHet-like neuron).

    ``rate_parameters()`` gives the leak of the latest draw (what the forward used)."""

    is_stochastic = True

    def draw_decay(self, current: torch.Tensor) -> torch.Tensor:
        self.decay = 0.5 + 0.4 * torch.rand(current.shape[1:], dtype=current.dtype, device=current.device)
        return self.decay


def network(neuron: type[FixedDecayLIF], decays=(None, None)) -> nn.Module:
    """Two spiking layers (the first with a PSC synapse) between linear maps, on ``[T, B, N]`` currents (float64).

    The second layer draws after the first, so a mode that left the RNG elsewhere would change its draw."""
    torch.manual_seed(100)  # the same weights for every network
    return nn.Sequential(nn.Linear(N, N), neuron(decays[0], PSC(2.0)), nn.Linear(N, N), neuron(decays[1]),
                         nn.Linear(N, 2)).double()


def drawn_decays(seed: int) -> list[torch.Tensor]:
    """The leaks the random network draws after ``torch.manual_seed(seed)``, reproduced by hand."""
    torch.manual_seed(seed)
    return [0.5 + 0.4 * torch.rand(N, dtype=torch.float64) for _ in range(2)]


def value_and_grad(net: nn.Module, x: torch.Tensor, mode: str | None, seed: int):
    """Output and input gradient of ``sum(net(x) * upstream)`` under ``gradient_mode(mode)`` after seeding."""
    upstream = torch.linspace(-1, 1, 2 * B * T, dtype=torch.float64, device=x.device).view(T, B, 2)
    x = x.clone().requires_grad_(True)
    torch.manual_seed(seed)
    with gradient_mode(mode):
        out = net(x)
        (g,) = torch.autograd.grad((out * upstream).sum(), x)
    return out.detach(), g


def inputs() -> torch.Tensor:
    return torch.randn(T, B, N, generator=torch.Generator().manual_seed(7), dtype=torch.float64) + 0.8


# Every registered backward mode applies: the test neuron gives a step function (the unrolled modes, BPTR) and its
# leak, threshold and input scale (RGA, hosnn-code). RGA re-runs nothing (it reads the leak of the exact forward's
# draw), so it passes with or without the replay; it is here to pin that down.
@pytest.mark.parametrize("mode", sorted(BACKWARD_MODES))
@pytest.mark.parametrize("seed", [0, 1])
def test_a_mode_differentiates_the_draw_of_its_forward(mode, seed):
    x = inputs()
    twin = network(FixedDecayLIF, drawn_decays(seed))
    random = network(RandomDecayLIF)
    out, g = value_and_grad(random, x, mode, seed)
    twin_out, twin_g = value_and_grad(twin, x, mode, seed)
    assert torch.equal(out, twin_out), "the exact forward must use the seed's draw"
    torch.testing.assert_close(g, twin_g, rtol=1e-12, atol=1e-12)
    assert g.abs().sum() > 0
    plain, _ = value_and_grad(random, x, None, seed)
    assert torch.equal(out, plain), "a mode must not change the value"


@pytest.mark.parametrize("mode", sorted(BACKWARD_MODES))
def test_a_mode_advances_the_rng_as_a_plain_forward(mode):
    x = inputs()
    random = network(RandomDecayLIF)
    value_and_grad(random, x, None, 3)
    plain = torch.get_rng_state()
    next_plain = torch.rand(5)
    value_and_grad(random, x, mode, 3)
    assert torch.equal(torch.get_rng_state(), plain)
    assert torch.equal(torch.rand(5), next_plain)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("mode", ["bptr", "hart-mix", "pdsg"])
def test_the_cuda_draw_is_replayed_too(mode):
    device = torch.device("cuda")
    x = inputs().to(device)
    random = network(RandomDecayLIF).to(device)
    torch.manual_seed(5)
    plain = random(x)
    cuda_after = torch.cuda.get_rng_state(device)
    decays = [m.decay.clone() for m in random if isinstance(m, RandomDecayLIF)]
    twin = network(FixedDecayLIF, decays).to(device)
    out, g = value_and_grad(random, x, mode, 5)
    assert torch.equal(torch.cuda.get_rng_state(device), cuda_after)
    twin_out, twin_g = value_and_grad(twin, x, mode, 5)
    assert torch.equal(out, plain) and torch.equal(out, twin_out)
    torch.testing.assert_close(g, twin_g, rtol=1e-12, atol=1e-12)


def test_the_replay_restores_on_an_exception():
    neuron, x = RandomDecayLIF(), inputs()
    torch.manual_seed(4)
    replay = DrawReplay(neuron, x)
    first = neuron(x)
    after = torch.get_rng_state()
    with pytest.raises(RuntimeError, match="inside the re-run"), replay:
        assert torch.equal(neuron(x), first)  # replayed
        raise RuntimeError("inside the re-run")
    assert torch.equal(torch.get_rng_state(), after)
    with replay:
        assert torch.equal(neuron(x), first)  # replayed again
    assert torch.equal(torch.get_rng_state(), after)


@pytest.mark.parametrize("mode", sorted(BACKWARD_MODES))
def test_deterministic_neurons_leave_the_rng_alone(mode, monkeypatch):
    def boom(*args):
        raise AssertionError("RNG state touched for a deterministic neuron")

    monkeypatch.setattr(torch, "get_rng_state", boom)
    monkeypatch.setattr(torch, "set_rng_state", boom)
    lif = LIF(LIFParameters(tau_m=4.0), PSC(2.0))
    x = inputs().requires_grad_(True)
    assert DrawReplay(lif, x).start is None
    with gradient_mode(mode):
        torch.autograd.grad(lif(x).sum(), x)


# ------------------------------------------------------------------------------------------------- PDSG per sample
def test_pdsg_gradient_of_a_sample_does_not_depend_on_its_batch():
    torch.manual_seed(0)
    model = create_model("lenet", dataset="fashion_mnist", neuron="lif", encoder="direct", T=3).double().eval()
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x[1:] *= torch.tensor([0.3, 1.0, 0.6], dtype=torch.float64).view(3, 1, 1, 1)  # batch-mates of other contrast
    y = torch.tensor([2, 5, 7, 1])

    def grad(xs, ys):
        xs = xs.clone().requires_grad_(True)
        with gradient_mode("pdsg"):
            (g,) = torch.autograd.grad(F.cross_entropy(model(xs), ys, reduction="sum"), xs)
        return g

    batch = grad(x, y)
    assert batch.abs().sum() > 0
    for i in range(len(y)):
        torch.testing.assert_close(grad(x[i:i + 1], y[i:i + 1]), batch[i:i + 1], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(grad(x[[2, 0]], y[[2, 0]]), batch[[2, 0]], rtol=1e-9, atol=1e-12)
