"""spikeshield.adapters.wrap on real SpikingJelly, snnTorch and Norse networks (issue 20, part 1)."""

from __future__ import annotations

import norse.torch as norse
import pytest
import snntorch as snn
import snntorch.utils
import torch
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn

from spikeshield.adapters import WrappedModel, wrap
from spikeshield.adapters.foreign import ForeignNeuron
from spikeshield.attacks import PGD
from spikeshield.evaluation.audit_probes import _check_state_leak
from spikeshield.neurons.gradients import MODEL_GRADIENTS, gradient_mode, gradient_names

T = 4


def _scaled(net: nn.Module) -> nn.Module:
    """Seeded weights large enough that every layer spikes."""
    torch.manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.Linear | nn.Conv2d):
            nn.init.normal_(m.weight, std=0.25)
            nn.init.zeros_(m.bias)
    return net


def snntorch_net(reset: str = "subtract", reset_delay: bool = True) -> nn.Module:
    return _scaled(nn.Sequential(
        nn.Flatten(), nn.Linear(784, 32),
        snn.Leaky(beta=0.8, init_hidden=True, reset_mechanism=reset, reset_delay=reset_delay),
        nn.Linear(32, 10), snn.Leaky(beta=0.8, init_hidden=True, output=True, reset_mechanism=reset,
                                     reset_delay=reset_delay)))


def spikingjelly_net(step_mode: str = "s", soft: bool = False) -> nn.Module:
    v_reset = None if soft else 0.0
    net = _scaled(nn.Sequential(
        layer.Conv2d(1, 4, 5, stride=2), layer.BatchNorm2d(4), neuron.IFNode(v_reset=v_reset), layer.Flatten(),
        layer.Linear(4 * 12 * 12, 10), neuron.LIFNode(tau=2.0, v_reset=v_reset)))
    functional.set_step_mode(net, step_mode)
    return net


def norse_net(sequence: bool = False) -> nn.Module:
    if sequence:
        return _scaled(norse.SequentialState(norse.Lift(nn.Flatten()), norse.Lift(nn.Linear(784, 32)), norse.LIF(),
                                             norse.Lift(nn.Linear(32, 10)), norse.LI()))
    return _scaled(norse.SequentialState(nn.Flatten(), nn.Linear(784, 32), norse.LIFCell(), nn.Linear(32, 10),
                                         norse.LICell()))


def run_natively(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``[T, B, classes]`` the way each framework's own code runs the network (reset, then loop or sequence)."""
    if isinstance(net, norse.SequentialState):
        if isinstance(net[2], norse.LIF):
            return net(x.unsqueeze(0).repeat(T, 1, 1, 1, 1))[0]
        state, outs = None, []
        for _ in range(T):
            out, state = net(x, state)
            outs.append(out)
        return torch.stack(outs)
    if any(isinstance(m, snn.Leaky) for m in net.modules()):
        snn.utils.reset(net)
        return torch.stack([net(x)[0] for _ in range(T)])
    functional.reset_net(net)
    if net[0].step_mode == "m":
        return net(x.unsqueeze(0).repeat(T, 1, 1, 1, 1))
    return torch.stack([net(x) for _ in range(T)])


NETS = {
    "snntorch": snntorch_net, "snntorch-zero": lambda: snntorch_net("zero"),
    "snntorch-no-delay": lambda: snntorch_net(reset_delay=False),
    "snntorch-nested": lambda: _scaled(nn.Sequential(  # neurons inside nested blocks are found too
        nn.Flatten(), nn.Sequential(nn.Linear(784, 32), nn.Sequential(snn.Leaky(beta=0.8, init_hidden=True))),
        nn.Linear(32, 10), snn.Leaky(beta=0.8, init_hidden=True, output=True))),
    "spikingjelly-single": spikingjelly_net, "spikingjelly-multi": lambda: spikingjelly_net("m"),
    "spikingjelly-soft": lambda: spikingjelly_net(soft=True),
    "norse-cells": norse_net, "norse-sequence": lambda: norse_net(sequence=True),
}


@pytest.fixture
def images(fmnist_batch):
    return fmnist_batch


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("train", [False, True])
def test_wrapped_matches_framework_forward_and_gradient(name, train, images):
    """Same scores as the framework's own run, and the same input gradient (its own surrogate), train or eval."""
    x, y = images
    net = NETS[name]().train(train)
    model = wrap(net, T=T)
    assert isinstance(model, WrappedModel) and model.training == train
    assert any(isinstance(m, ForeignNeuron) for m in model.modules())
    x_ours, x_theirs = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ours, theirs = model.forward_steps(x_ours), run_natively(net, x_theirs)
    assert torch.equal(ours, theirs)
    assert ours.abs().sum() > 0
    g_ours, = torch.autograd.grad(nn.functional.cross_entropy(ours.mean(0), y), x_ours)
    g_theirs, = torch.autograd.grad(nn.functional.cross_entropy(theirs.mean(0), y), x_theirs)
    assert g_ours.abs().sum() > 0
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name", ["snntorch", "spikingjelly-single", "spikingjelly-multi", "norse-cells"])
def test_every_gradient_mode_reaches_the_wrapped_neurons(name, images):
    """Each neuron-level mode: bit-identical forward, a finite non-zero input gradient that differs from "own"."""
    x, y = images
    model = wrap(NETS[name](), T=T).eval()
    plain = model(x)

    def grad() -> torch.Tensor:
        xg = x.clone().requires_grad_(True)
        out = model(xg)
        assert torch.equal(out, plain)
        return torch.autograd.grad(nn.functional.cross_entropy(out, y), xg)[0]

    own = grad()
    for mode in sorted(set(gradient_names()) - {"own", *MODEL_GRADIENTS}):
        with gradient_mode(mode):
            g = grad()
        assert torch.isfinite(g).all() and g.abs().sum() > 0, mode
        if mode not in ("sigmoid", "arctan"):  # a framework's own surrogate may coincide with one of ours
            assert not torch.equal(g, own), mode


@pytest.mark.parametrize("name", ["snntorch", "spikingjelly-multi", "norse-cells", "norse-sequence"])
def test_ann_twin_gradients_of_wrapped_models(name, images):
    """grad="ann" / "ann-clamp": the SNN's values, the twin's (ReLU / clamp, T = 1) gradient; the twin is built
    from a snapshot of the wrapped network."""
    from spikeshield.attacks import with_ann_gradients
    from spikeshield.models import ann_twin

    x, y = images
    model = wrap(NETS[name](), T=T).eval()
    twin = ann_twin(model)
    assert twin.T == 1 and not any(isinstance(m, ForeignNeuron) for m in twin.modules())
    assert twin(x).shape == (x.shape[0], 10)
    grads = []
    for activation in ("relu", "clamp"):
        ann = with_ann_gradients(model, activation)
        xg = x.clone().requires_grad_(True)
        out = ann(xg)
        assert torch.equal(out, model(x))
        g, = torch.autograd.grad(nn.functional.cross_entropy(out, y), xg)
        assert torch.isfinite(g).all() and g.abs().sum() > 0
        grads.append(g)
    assert not torch.equal(*grads)
    x_adv = PGD(model, eps=8 / 255, steps=2, grad="ann")(x, y)
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6
    with pytest.raises(ValueError, match="'relu' or 'clamp'"):
        model.ann_twin("tanh")


@pytest.mark.parametrize("name", ["snntorch", "spikingjelly-multi", "norse-cells"])
def test_state_leak_check_passes_wrapped_and_fails_naive(name, images):
    """The audit's state_leak check: a naive loop without resets leaks state between calls; the wrapper does not."""
    x, _ = images
    net = NETS[name]().eval()

    class Naive(nn.Module):  # what a user writes around the framework: no reset between calls
        def forward(self, x):
            if isinstance(net, norse.SequentialState):  # Norse: the state carried over from the last call
                out, self.state = net(x, getattr(self, "state", None))
                return out
            if net[0].__class__.__module__.startswith("spikingjelly") and net[0].step_mode == "m":
                return net(x.unsqueeze(0).repeat(T, 1, 1, 1, 1)).mean(0)
            return torch.stack([net(x)[0] if isinstance(net(x), tuple) else net(x) for _ in range(T)]).mean(0)

    _, leak_naive = _check_state_leak(Naive(), x, seed=0, declared=False)
    _, leak_wrapped = _check_state_leak(wrap(net, T=T), x, seed=0, declared=False)
    assert leak_naive and not leak_wrapped


def test_wrap_copies_and_leaves_the_original_alone(images):
    x, _ = images
    net = snntorch_net()
    model = wrap(net, T=T)
    assert sum(isinstance(m, snn.Leaky) for m in net.modules()) == 2  # still snnTorch neurons
    assert all(not isinstance(m, ForeignNeuron) for m in net.modules())
    model(x)
    assert all(m.mem.numel() == 0 for m in net.modules() if isinstance(m, snn.Leaky))


def test_pgd_on_wrapped_model_in_eval_mode(images):
    x, y = images
    model = wrap(spikingjelly_net("m"), T=T).eval()
    x_adv = PGD(model, eps=8 / 255, alpha=2 / 255, steps=3)(x, y)
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert not torch.equal(model(x_adv), model(x))


def test_options_input_range_normalize_readout_encoder(images):
    x, _ = images
    net = snntorch_net()
    base = wrap(net, T=T)
    shifted = wrap(net, T=T, input_range=(-1.0, 1.0))
    normalised = wrap(net, T=T, normalize=(0.5, 0.5))
    torch.testing.assert_close(shifted(x), normalised(x))  # (x - 0.5) / 0.5 == 2x - 1
    assert not torch.equal(shifted(x), base(x))
    membrane = wrap(net, T=T, readout=1)(x)
    assert not torch.equal(membrane, base(x)) and membrane.shape == (x.shape[0], 10)
    poisson = wrap(net, T=T, encoder="poisson")
    assert poisson.is_stochastic and not base.is_stochastic
    assert wrap(net, T=T, stochastic=True).is_stochastic


def test_clear_errors(images):
    x, _ = images
    with pytest.raises(ValueError, match="cannot detect the framework"):
        wrap(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)))
    with pytest.raises(ValueError, match="unknown framework"):
        wrap(snntorch_net(), framework="brian")
    with pytest.raises(ValueError, match="T must be"):
        wrap(snntorch_net(), T=0)
    with pytest.raises(ValueError, match=r"\['Synaptic'\] have no spikeshield adapter"):
        wrap(nn.Sequential(nn.Flatten(), nn.Linear(784, 10), snn.Synaptic(alpha=0.9, beta=0.8, init_hidden=True)))
    mixed = spikingjelly_net()
    mixed[2].step_mode = "m"
    with pytest.raises(ValueError, match="mixes single-step and multi-step"):
        wrap(mixed)

    class Loop(nn.Module):  # snnTorch tutorial style: the network loops over time with explicit membranes
        def __init__(self):
            super().__init__()
            self.fc, self.lif = nn.Linear(784, 10), snn.Leaky(beta=0.9)

        def forward(self, x):
            mem, out = self.lif.reset_mem(), []
            for _ in range(3):
                spk, mem = self.lif(self.fc(x.flatten(1)), mem)
                out.append(spk)
            return torch.stack(out).sum(0)

    with pytest.raises(RuntimeError, match="called with an explicit state"):
        wrap(Loop(), T=T)(x)
    with pytest.raises(ValueError, match="images"):
        wrap(snntorch_net(), T=T, dataset="cifar10")(x)


FACTORY = '''
import snntorch as snn
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), snn.Leaky(beta=0.8, init_hidden=True), nn.Linear(32, 10),
                        snn.Leaky(beta=0.8, init_hidden=True, output=True))
    for m in net.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.25)
    return net
'''


def test_cli_eval_and_audit_on_a_users_model(tmp_path, capsys):
    """``spikeshield eval --model file.py:factory`` wraps the network and writes the usual records."""
    import json

    from spikeshield.cli import main

    (tmp_path / "user_net.py").write_text(FACTORY)
    common = ["--model", f"{tmp_path / 'user_net.py'}:build", "--T", "4", "--n-examples", "8", "--no-progress"]
    assert main(["eval", *common, "--attacks", "fgsm,pgd7", "--out", str(tmp_path / "eval")]) == 0
    record = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert record["model"]["framework"] == "snntorch" and record["n_examples"] == 8
    assert set(record["robust_acc"]) == {"fgsm", "pgd7"}
    assert main(["audit", *common, "--out", str(tmp_path / "audit"), "--n-random", "4", "--n-queries", "20"]) == 0
    audit = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert not audit["evidence"]["state_leak"]["raised"]
    assert main(["eval", "--model", f"{tmp_path / 'user_net.py'}:nothing", "--n-examples", "2"]) == 2
    assert "has no attribute 'nothing'" in capsys.readouterr().err


def test_import_model_wraps_foreign_and_keeps_ours(tmp_path):
    from spikeshield.adapters.user import import_model

    (tmp_path / "user_net.py").write_text(FACTORY + "\n\nNET = build()\n\n\ndef ours():\n"
                                          "    from spikeshield.adapters import wrap\n    return wrap(NET, T=2)\n")
    wrapped = import_model(f"{tmp_path / 'user_net.py'}:NET", T=3)
    assert isinstance(wrapped, WrappedModel) and wrapped.T == 3
    assert import_model(f"{tmp_path / 'user_net.py'}:ours", T=3).T == 2  # already ours: not wrapped again
    with pytest.raises(ValueError, match="module.path:factory"):
        import_model("no_colon")
    with pytest.raises(ValueError, match="cannot import"):
        import_model("no_such_package_xyz:build")
