"""Adaptive attacker gradients (METHODS 7): the exponential surrogate, BPTR, RGA, the ANN twin, gradient suffixes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import TinyNet, layer_grad

from spikeshield.attacks import (
    FGSM,
    GRADIENT_VARIANTS,
    PGD,
    adaptive_attacks,
    make_attack,
    parse_attack_list,
    with_ann_gradients,
)
from spikeshield.evaluation import evaluate
from spikeshield.models import ann_twin, create_model
from spikeshield.neurons import (
    LIF,
    PSC,
    Exponential,
    LIFParameters,
    SpikingNeuron,
    active_mode,
    gradient_mode,
    lif_step,
    make_surrogate,
    psc_kernel,
    record,
)

EPS = 8 / 255
MODES = ["own", "rga", "bptr", "triangle", "exponential", "straight_through", {"name": "rga", "gamma": 0.5}, "hart",
         "hart-mix", "pdsg", "assg"]


def input_grad(model, x, y, mode=None):
    """Logits and the CE input gradient of ``model`` at ``x`` under ``gradient_mode(mode)``."""
    x = x.clone().requires_grad_(True)
    with gradient_mode(mode):
        logits = model(x)
        (g,) = torch.autograd.grad(F.cross_entropy(logits, y), x)
    return logits.detach(), g


def rga_by_hand(ibar: float, lam: float, gamma: float = 0.2) -> float:
    """METHODS 7's piecewise RGA factor, the first range winning at ``1 - lam``."""
    if 1 - lam <= ibar <= 2:
        return (1 - gamma + gamma * lam) / (lam + 1)
    if 0 <= ibar <= 1 - lam:
        return gamma
    return 0.0


def currents_with_means(ibar: list[float], p: LIFParameters, T: int = 4, batch: int = 3) -> torch.Tensor:
    """Float64 currents ``[T, batch, len(ibar)]`` whose ``mean_t(c I) / theta`` is ``ibar`` (plus time variation)."""
    base = torch.tensor(ibar, dtype=torch.float64) * p.theta / p.input_scale
    wiggle = torch.tensor([0.3, -0.3, 0.1, -0.1], dtype=torch.float64)[:T] * p.theta
    return (base + wiggle[:, None, None]).expand(T, batch, len(ibar)).clone()


# --------------------------------------------------------------------------------------------- the surrogate
def test_exponential_surrogate():
    s = make_surrogate("exponential", a=0.3, g=2.0)
    assert s == Exponential(0.3, 2.0)
    v = torch.tensor([-0.5, 0.0, 1.5])
    assert torch.allclose(s.derivative(v), 0.3 * torch.exp(-2.0 * v.abs()))
    with pytest.raises(ValueError, match="must be > 0"):
        make_surrogate("exponential", g=0)


# ------------------------------------------------------------------------------------------ forward untouched
@pytest.mark.parametrize("synapse", [3.0, None])
def test_forward_bit_identical_under_every_mode(synapse):
    model = create_model("lenet", T=2, synapse=synapse).eval()
    x, y = torch.rand(3, 1, 28, 28), torch.tensor([0, 1, 2])
    own_logits, own_grad = input_grad(model, x, y)
    with record(model) as own_rec:
        model(x)
    for mode in MODES:
        logits, g = input_grad(model, x, y, mode)
        assert torch.equal(logits, own_logits), f"mode {mode} changed the forward"
        assert torch.isfinite(g).all() and g.abs().sum() > 0
        if mode != "own":
            assert not torch.equal(g, own_grad), f"mode {mode} did not change the backward"
        with gradient_mode(mode), record(model) as rec:
            model(x)
        for kind in ("membrane", "spikes", "psc"):
            ours, theirs = getattr(rec, kind), getattr(own_rec, kind)
            assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours), kind
    wrapped = with_ann_gradients(model)
    assert torch.equal(input_grad(wrapped, x, y)[0], own_logits)


def test_default_path_does_no_mode_work(monkeypatch):
    def boom(self):
        raise AssertionError("rate_parameters called without a mode")

    monkeypatch.setattr(LIF, "rate_parameters", boom)
    model = create_model("lenet", T=2)
    input_grad(model, torch.rand(2, 1, 28, 28), torch.tensor([0, 1]))
    with pytest.raises(AssertionError, match="without a mode"):
        input_grad(model, torch.rand(2, 1, 28, 28), torch.tensor([0, 1]), "rga")


# --------------------------------------------------------------------------------------- the backward rules
@pytest.mark.parametrize("tau_m,form,theta", [(5.0, "decay", 1.0), (math.inf, "decay", 1.0), (1.0, "decay", 0.5),
                                              (4.0, "tau", 0.7), (2.0, "decay", 2.0)])
def test_rga_backward_is_the_rule(tau_m, form, theta):
    p = LIFParameters(tau_m=tau_m, form=form, theta=theta)
    lam = p.decay
    ibar = [-0.4, 0.5 * (1 - lam), 0.5 * (1 - lam) + 0.5 * (2 + lam - 1), 1.9, 2.3, 7.0]
    if lam == 1:  # integrate-and-fire: [0, 2] is one range, 0 included
        ibar[1] = 0.0
    current = currents_with_means(ibar, p)
    upstream = torch.randn_like(current)
    out, g = layer_grad(LIF(p), current, upstream, "rga")
    factor = torch.tensor([rga_by_hand(i, lam) for i in ibar], dtype=torch.float64)
    torch.testing.assert_close(g, upstream * factor)
    assert torch.equal(out, LIF(p)(current))
    expected = {1.0: [0, 0.5, 0.5, 0.5, 0, 0], 0.0: [0, 0.2, 0.8, 0.8, 0, 0]}.get(lam)
    if expected is not None:  # the branches, by value, for IF and lambda = 0
        torch.testing.assert_close(factor, torch.tensor(expected, dtype=torch.float64))


def test_rga_gamma_parameter():
    p = LIFParameters(tau_m=5.0)
    current = currents_with_means([0.1, 1.0], p)
    upstream = torch.ones_like(current)
    _, g = layer_grad(LIF(p), current, upstream, {"name": "rga", "gamma": 0.5})
    lam = p.decay
    torch.testing.assert_close(g[0, 0], torch.tensor([0.5, (1 - 0.5 + 0.5 * lam) / (lam + 1)], dtype=torch.float64))


@pytest.mark.parametrize("tau_m,form", [(5.0, "decay"), (math.inf, "decay"), (3.0, "tau")])
def test_bptr_backward_is_the_rule(tau_m, form):
    p = LIFParameters(tau_m=tau_m, form=form)
    g = torch.Generator().manual_seed(3)
    current = torch.randn(5, 4, 30, generator=g, dtype=torch.float64) * 0.8
    current[:, :, :5] = -1.0  # never fires
    current[0, :, 5:10], current[1:, :, 5:10] = 5.0, -3.0  # fires once, at t = 0
    upstream = torch.randn_like(current)
    lif = LIF(p)
    out, grad = layer_grad(lif, current, upstream, "bptr")
    fired = out.bool().any(0, keepdim=True)
    assert not fired[..., :5].any() and fired[..., 5:10].all()
    torch.testing.assert_close(grad, upstream * fired)


@pytest.mark.parametrize("mode", ["rga", "bptr"])
def test_modes_pass_through_the_psc_filter(mode):
    p, tau_s = LIFParameters(tau_m=4.0), 3.0
    current = currents_with_means([-0.3, 0.1, 0.9, 1.6, 3.0], p, T=4)
    current[0] += 1.5  # make every neuron but the first spike at least once
    current[:, :, 0] = -1.0
    upstream = torch.randn_like(current)
    out, g = layer_grad(LIF(p, synapse=PSC(tau_s)), current, upstream, mode)
    assert torch.equal(out, LIF(p, synapse=PSC(tau_s))(current))
    spikes, _ = layer_grad(LIF(p), current, upstream, mode)
    if mode == "bptr":
        factor = spikes.bool().any(0, keepdim=True).double()
        assert factor[..., 1:].all() and not factor[..., 0].any()
    else:
        ibar = (current * p.input_scale).mean(0) / p.theta
        factor = torch.tensor([rga_by_hand(float(i), p.decay) for i in ibar[0]], dtype=torch.float64)
    kernel = psc_kernel(4, tau_s, dtype=torch.float64)
    through_psc = torch.einsum("st,sbn->tbn", kernel, upstream)  # K^T dL/da
    torch.testing.assert_close(g, through_psc * factor)


class StepLIF(SpikingNeuron):
    """A LIF layer on the generic step loop (no fused kernel) that supports the modes."""

    def __init__(self, p: LIFParameters, synapse=None) -> None:
        super().__init__(synapse)
        self.p, self.surrogate = p, p.surrogate

    def step(self, current, state, surrogate):
        return lif_step(current, state, self.p, surrogate)

    def rate_parameters(self):
        return LIF(self.p).rate_parameters()


class NoModes(StepLIF):
    """A neuron that does not declare rate parameters."""

    rate_parameters = SpikingNeuron.rate_parameters


@pytest.mark.parametrize("mode", ["rga", "bptr"])
def test_modes_on_the_generic_step_loop(mode):
    p = LIFParameters(tau_m=3.0)
    current = torch.randn(4, 2, 20, dtype=torch.float64) + 0.5
    upstream = torch.randn_like(current)
    for tau_s in (None, 2.0):
        out, g = layer_grad(StepLIF(p, tau_s and PSC(tau_s)), current, upstream, mode)
        fused_out, fused_g = layer_grad(LIF(p, tau_s and PSC(tau_s)), current, upstream, mode)
        torch.testing.assert_close(out, fused_out, rtol=0, atol=1e-12)
        torch.testing.assert_close(g, fused_g)


def test_unsupported_neuron_names_itself_and_the_mode():
    neuron = NoModes(LIFParameters())
    current = torch.randn(3, 2, 5, requires_grad=True)
    neuron(current).sum().backward()  # fine with its surrogate
    with pytest.raises(NotImplementedError, match="NoModes.*'rga'"):
        layer_grad(neuron, current, torch.ones(3, 2, 5), "rga")


def test_mode_is_restored_after_the_block_and_on_exception():
    lif = LIF(LIFParameters())
    current = torch.randn(5, 3, 8)
    upstream = torch.randn_like(current)
    own = layer_grad(lif, current, upstream, None)[1]
    with gradient_mode("rga"):
        assert active_mode() is not None
        with gradient_mode("bptr"):
            assert active_mode().name == "bptr"
        assert active_mode().name == "rga"
    assert active_mode() is None
    with pytest.raises(RuntimeError, match="attack failed"):
        with gradient_mode("bptr"):
            raise RuntimeError("attack failed")
    assert active_mode() is None
    assert torch.equal(layer_grad(lif, current, upstream, None)[1], own)


def test_unknown_gradient_names_list_the_valid_ones():
    model = TinyNet()
    for call in (lambda: gradient_mode("rgaa").__enter__(), lambda: FGSM(model, EPS, grad="nosuch"),
                 lambda: make_attack("pgd7@nosuch", model, EPS)):
        with pytest.raises(ValueError, match="choose one of:.*ann.*bptr.*exponential.*rga.*triangle"):
            call()
    with pytest.raises(ValueError, match="with_ann_gradients"):
        gradient_mode("ann").__enter__()
    with pytest.raises(ValueError, match="takes parameters"):
        gradient_mode("rga", width=2).__enter__()
    with pytest.raises(ValueError, match="takes 1 parameter"):
        make_attack("pgd7@triangle-0.5-2", model, EPS)
    with pytest.raises(ValueError, match="must be > 0"):
        make_attack("pgd7@triangle-0", model, EPS)
    assert active_mode() is None


# ------------------------------------------------------------------------------------------------ the ANN twin
def test_ann_path_snn_values_twin_gradients():
    torch.manual_seed(1)
    model = create_model("lenet", T=2).eval()
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([3, 1, 4, 1])
    twin = ann_twin(model)
    assert not twin.training and twin.config["ann"] and twin.T == 1
    snn_params = dict(model.named_parameters())
    assert all(torch.equal(p, snn_params[name]) for name, p in twin.named_parameters())
    wrapped = with_ann_gradients(model)
    assert wrapped.info is model.info and wrapped.num_classes == 10 and not wrapped.is_stochastic
    assert wrapped.config["gradient"] == "ann" and wrapped.config["name"] == "lenet"
    upstream = torch.randn(4, 10)

    def jvp(net):
        xx = x.clone().requires_grad_(True)
        out = net(xx)
        return out.detach(), torch.autograd.grad((out * upstream).sum(), xx)[0]

    logits, g = jvp(wrapped)
    assert torch.equal(logits, model(x)), "the ANN path must keep the SNN's values"
    assert torch.equal(g, jvp(twin)[1]), "the ANN path's gradient must be the twin's"
    attack = FGSM(model, EPS, grad="ann")
    assert attack.settings()["grad"] == "ann"
    objective, att_logits, att_grad = attack.objective_and_gradient(x, y)
    assert torch.equal(att_logits, model(x))
    torch.testing.assert_close(objective, F.cross_entropy(model(x), y, reduction="none"))
    expected = jvp_at(twin, x, torch.softmax(model(x), 1) - F.one_hot(y, 10))
    torch.testing.assert_close(att_grad, expected)


def jvp_at(net, x, upstream):
    """Input gradient of ``sum(net(x) * upstream)``."""
    xx = x.clone().requires_grad_(True)
    return torch.autograd.grad((net(xx) * upstream).sum(), xx)[0]


def test_ann_twin_needs_a_spikeshield_model():
    with pytest.raises(ValueError, match="create_model"):
        ann_twin(TinyNet())
    with pytest.raises(ValueError, match="create_model"):
        FGSM(TinyNet(), EPS, grad="ann")


# ---------------------------------------------------------------------------------------- registry and variants
def test_gradient_suffix_in_the_registry():
    torch.manual_seed(2)
    model = create_model("lenet", T=2).eval()
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    attack = make_attack("pgd7@rga", model, EPS)
    assert isinstance(attack, PGD) and attack.name == "pgd7@rga" and attack.steps == 7
    assert attack.settings()["grad"] == "rga"
    _, rga_grad = input_grad(model, x, y, "rga")
    with attack.gradient_context():  # what attack(x, y) runs its math in
        torch.testing.assert_close(attack.input_gradient(x, y), rga_grad * x.shape[0])  # the attack sums the CE
    assert make_attack("pgd7@bptr", model, EPS).settings()["grad"] == "bptr"
    tri = make_attack("PGD-7@Triangle:0.5", model, EPS, grad=None)
    assert tri.name == "pgd7@triangle-0.5" and tri.settings()["grad"] == {"name": "triangle", "gamma": 0.5}
    assert make_attack("pgd7@triangle", model, EPS, grad="rga").settings()["grad"]["name"] == "triangle"
    exp = make_attack("fgsm@exponential-0.3-2", model, EPS)
    assert exp.settings()["grad"] == {"name": "exponential", "a": 0.3, "g": 2.0}
    assert make_attack("apgd-ce@ann", model, EPS, steps=2).settings()["grad"] == "ann"
    assert parse_attack_list("fgsm, PGD7@RGA, pgd7@straight-through,pgd7@rga") == [
        "fgsm", "pgd7@rga", "pgd7@straight_through"]


def test_gradient_variants_all_give_real_gradients(trained_lenet, fmnist_batch):
    x, y = fmnist_batch
    assert len(GRADIENT_VARIANTS) == 19
    attacks = adaptive_attacks("fgsm", trained_lenet, EPS)
    names = [a.name for a in attacks]
    assert len(set(names)) == 19 and "fgsm@triangle-0.25" in names and "fgsm@exponential-0.3-0.5" in names
    assert {"fgsm@rectangle-4", "fgsm@straight_through", "fgsm@bptr", "fgsm@ann"} <= set(names)
    own = FGSM(trained_lenet, EPS).input_gradient(x, y)
    for attack in attacks:
        with attack.gradient_context():
            g = attack.input_gradient(x, y)
        assert torch.isfinite(g).all() and g.abs().sum() > 0, attack.name
        assert not torch.equal(g, own), attack.name
    assert not trained_lenet.training


def test_adaptive_attacks_worst_case_in_evaluate(trained_lenet, fmnist_batch):
    x, y = (t[:6] for t in fmnist_batch)
    attacks = adaptive_attacks("fgsm", trained_lenet, EPS, variants=["rga", "bptr", {"name": "triangle", "gamma": 2}])
    result = evaluate(trained_lenet, x, y, attacks=[*attacks, "fgsm@ann"], eps=EPS, progress=False)
    assert list(result.robust_acc) == ["fgsm@rga", "fgsm@bptr", "fgsm@triangle-2", "fgsm@ann"]
    assert result.worst_case_acc <= min(result.robust_acc.values())
    assert result.attacks["fgsm@rga"]["grad"] == "rga"
    with pytest.raises(ValueError, match="suffix"):
        adaptive_attacks("fgsm@rga", trained_lenet, EPS)
    with pytest.raises(ValueError, match="repeat"):
        adaptive_attacks("fgsm", trained_lenet, EPS, variants=["rga", "rga"])
