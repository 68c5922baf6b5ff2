"""Tests of FAB / FAB-T (L-inf): the exact hyperplane-and-box projection, closed-form minimal distances of linear
models, the target order of FAB-T, real-image strength, the eps-ball contract, EOT and argument checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TinyNet, fooled
from scipy.optimize import linprog
from torch import nn

from spikeshield.attacks.base import Attack
from spikeshield.attacks.fab import FAB, linf_projection
from spikeshield.data.info import DatasetInfo

EPS = 8 / 255
#: FAB's overshoot eta = 1.05 with the backward step beta = 0.9 settles, on a linear boundary, at 1.0052 x the
#: minimal distance (a fixed point of the reference's iteration); the tests allow 1%
RATIO = 1.01


class LinearNet(nn.Module):
    """TinyNet without the tanh: logits ``W x + b`` on flattened ``1 x 4 x 4`` images; the decision boundaries are
    hyperplanes. ``noise > 0`` adds uniform input noise in every forward pass (a stochastic model)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, noise: float = 0.0) -> None:
        super().__init__()
        self.info = DatasetInfo("linear", 1, 4, weight.shape[0], (0.5,), (0.5,))
        self.fc = nn.Linear(16, weight.shape[0])
        with torch.no_grad():
            self.fc.weight.copy_(weight)
            self.fc.bias.copy_(bias)
        self.noise = noise

    @property
    def is_stochastic(self) -> bool:
        return self.noise > 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.noise:
            x = x + self.noise * torch.rand_like(x)
        return self.fc(x.flatten(1))


def class_distances(model: LinearNet, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Closed-form L-inf distance ``[B, classes]`` to each class's decision boundary, ignoring the box (``inf`` for
    ``y``): ``(z_y - z_j) / ||w_y - w_j||_1``, reached by moving every pixel by it against ``sign(w_y - w_j)``. The
    minimum over ``j`` is the smallest adversarial L-inf distance where the box does not bind."""
    with torch.no_grad():
        z = model.fc(x.flatten(1))
        w = model.fc.weight
        d = (z.gather(1, y[:, None]) - z) / (w[y][:, None, :] - w[None]).abs().sum(2)
    return d.scatter(1, y[:, None], float("inf"))


def random_linear_problem(classes: int, batch: int = 12):
    """A random linear model, images with pixels in [0.4, 0.6] (the box never binds) labelled by it, and the exact
    minimal L-inf distances. Seeds picked so that labels vary and, for every sample, the closest boundary is that of
    the class with the highest other logit (FAB-T's first target; checked here)."""
    g = torch.Generator().manual_seed({2: 2, 3: 7}[classes])
    weight = torch.randn(classes, 16, generator=g)
    model = LinearNet(weight, 0.3 * torch.randn(classes, generator=g) - 0.5 * weight.sum(1))  # W (x - 0.5) + b
    x = 0.4 + 0.2 * torch.rand(batch, 1, 4, 4, generator=g)
    with torch.no_grad():
        z = model(x)
    y = z.argmax(1)
    dist = class_distances(model, x, y)
    opt = dist.min(1).values
    assert (x - opt.view(-1, 1, 1, 1)).min() > 0 and (x + opt.view(-1, 1, 1, 1)).max() < 1, "box would bind"
    assert torch.equal(dist.argmin(1), z.scatter(1, y[:, None], -torch.inf).argmax(1)) and len(set(y.tolist())) > 1
    return model, x, y, opt


def orthogonal_problem(batch: int = 6):
    """3 classes, label 0: class 1 has the higher logit but lies at L-inf distance ~0.10, class 2 at ~0.05.

    ``z = [0, <u1, x> - 1, <u2, x> - 2]`` with ``u1 = 0.625 s1``, ``u2 = 2.5 s2`` (``||u1||_1 = 10``,
    ``||u2||_1 = 40``) and orthogonal balanced sign patterns ``s1``, ``s2``: moving towards one boundary leaves the
    other logit unchanged.
    """
    s1 = torch.tensor([1.0, -1.0] * 8)
    s2 = torch.tensor([1.0] * 4 + [-1.0] * 8 + [1.0] * 4)
    assert s1 @ s2 == 0 and s1.sum() == 0 and s2.sum() == 0
    model = LinearNet(torch.stack([torch.zeros(16), 0.625 * s1, 2.5 * s2]), torch.tensor([0.0, -1.0, -2.0]))
    x = 0.5 + 0.02 * (torch.rand(batch, 1, 4, 4, generator=torch.Generator().manual_seed(3)) - 0.5)
    y = torch.zeros(batch, dtype=torch.long)
    with torch.no_grad():
        z = model(x)
    assert (z.argmax(1) == 0).all() and (z[:, 1] > z[:, 2]).all()
    return model, x, y


def linf(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).flatten(1).abs().amax(1)


# ------------------------------------------------------------------------------------------- the projection
def test_linf_projection_is_the_exact_lp_optimum():
    """Against scipy's LP solver: min r s.t. |d_i| <= r, <w, t + d> = b, 0 <= t + d <= 1 (zero weights included);
    where the LP is infeasible the projection goes to the box corner that comes closest, as the reference."""
    g = torch.Generator().manual_seed(0)
    n, dim = 30, 10
    t = torch.rand(n, dim, generator=g, dtype=torch.float64)
    w = torch.randn(n, dim, generator=g, dtype=torch.float64)
    w[:4, :3] = 0
    scale = torch.where(torch.arange(n) % 5 == 0, 4.0, 1.0).double()  # some hyperplanes miss the box
    b = (w * torch.rand(n, dim, generator=g, dtype=torch.float64)).sum(1) * scale
    d = linf_projection(t, w, b)
    a_ub = np.block([[np.eye(dim), -np.ones((dim, 1))], [-np.eye(dim), -np.ones((dim, 1))]])
    feasible = 0
    for i in range(n):
        ti, wi = t[i].numpy(), w[i].numpy()
        lp = linprog(np.r_[np.zeros(dim), 1.0], A_ub=a_ub, b_ub=np.zeros(2 * dim), A_eq=np.r_[wi, 0.0][None],
                     b_eq=[b[i].item() - wi @ ti], bounds=[(-v, 1 - v) for v in ti] + [(0, None)])
        z = t[i] + d[i]
        assert z.min() >= 0 and z.max() <= 1
        if lp.status == 0:
            feasible += 1
            assert abs(d[i].abs().max().item() - lp.fun) < 1e-8, (i, d[i].abs().max().item(), lp.fun)
            assert abs((w[i] @ z - b[i]).item()) < 1e-9
        else:  # the corner of the box that lowers |<w, z> - b| most
            sign = torch.sign((w[i] @ t[i] - b[i]) * w[i])
            corner = torch.where(sign > 0, 0.0, torch.where(sign < 0, 1.0, t[i]).double())
            assert torch.allclose(z, corner)
    assert 10 < feasible < n


def test_linf_projection_without_the_box_is_the_dual_norm_formula():
    """Far from the box edges the L-inf projection moves every pixel by |<w, t> - b| / ||w||_1 against sign(w)."""
    g = torch.Generator().manual_seed(1)
    t = 0.45 + 0.1 * torch.rand(8, 50, generator=g)
    w = torch.randn(8, 50, generator=g)
    b = (w * t).sum(1) + 0.5 * torch.randn(8, generator=g)
    c = (w * t).sum(1) - b
    expected = -(c / w.abs().sum(1))[:, None] * torch.sign(w)
    assert torch.allclose(linf_projection(t, w, b), expected, atol=1e-6)


# -------------------------------------------------------------------------------- closed-form optima (linear)
@pytest.mark.parametrize("classes,n_target_classes", [(2, 0), (3, 0), (2, 1), (3, 2)],
                         ids=["fab-2", "fab-3", "fab-t-2", "fab-t-3"])
def test_fab_finds_the_minimal_distance_of_a_linear_model(classes, n_target_classes):
    """With eps above every optimum, each sample is fooled at 1.0052 x its exact minimal L-inf distance (measured;
    for these random models the top other logit is also the closest boundary, so FAB-T finds it first)."""
    model, x, y, opt = random_linear_problem(classes)
    attack = FAB(model, 0.3, n_target_classes=n_target_classes)
    x_adv = attack(x, y)
    assert fooled(model, x_adv, y).all()
    norms = linf(x_adv, x)
    assert torch.equal(norms, attack.last_norms)
    assert (norms >= opt - 1e-6).all(), "beat the exact optimum"
    assert (norms <= RATIO * opt).all(), (norms / opt)


@pytest.mark.parametrize("n_target_classes", [0, 2])
def test_fab_finds_nothing_below_the_optimum_and_only_what_is_reachable(n_target_classes):
    model, x, y, opt = random_linear_problem(3)
    below = FAB(model, 0.99 * opt.min().item(), steps=30, n_target_classes=n_target_classes)
    assert torch.equal(below(x, y), x), "an adversarial point closer than the exact optimum"
    assert (below.last_norms >= opt - 1e-6).all() and torch.isfinite(below.last_norms).all()

    eps = opt.median().item()
    middle = FAB(model, eps, steps=30, n_target_classes=n_target_classes)
    x_adv = middle(x, y)
    hit = fooled(model, x_adv, y)
    assert (opt[hit] <= eps).all() and hit[RATIO * opt <= eps].all() and hit.any() and not hit.all()
    assert torch.equal(x_adv[~hit], x[~hit]), "samples not fooled within eps must get x back"
    assert linf(x_adv, x).max() <= eps + 1e-6


def test_fab_t_tries_the_top_logit_classes_in_order():
    """Class 1 has the higher logit (FAB-T's first target) but class 2's boundary is twice as close (FAB's answer)."""
    model, x, y = orthogonal_problem()
    dist = class_distances(model, x, y)
    d1, d2 = dist[:, 1], dist[:, 2]
    assert (d1 > 0.09).all() and (d2 < 0.06).all()
    steps, n = 20, len(x)

    fab = FAB(model, 0.3, steps=steps)
    fab(x, y)
    assert (fab.last_norms >= d2 - 1e-6).all() and (fab.last_norms <= RATIO * d2).all()

    first = FAB(model, 0.3, steps=steps, n_target_classes=2)  # target 1 succeeds within eps: target 2 never runs
    first(x, y)
    assert (first.last_norms >= d1 - 1e-6).all() and (first.last_norms <= RATIO * d1).all()
    assert first.forward_passes == n + 2 * steps * n

    both = FAB(model, 0.08, steps=steps, n_target_classes=2)  # target 1 is out of reach: target 2 runs
    x_adv = both(x, y)
    assert fooled(model, x_adv, y).all() and linf(x_adv, x).max() <= 0.08 + 1e-6
    assert (both.last_norms <= RATIO * d2).all()
    assert both.forward_passes == n + 2 * (2 * steps * n)

    one = FAB(model, 0.08, steps=steps, n_target_classes=1)
    assert torch.equal(one(x, y), x) and (one.last_norms >= d1 - 1e-6).all()


@pytest.mark.parametrize("alpha_max", [0.1, 1.0])
def test_one_step_from_a_random_start_is_the_biased_projection_step(alpha_max):
    """The update rule itself: from a restart's random start ``x1`` (L-inf distance eps/2), with ``d1``, ``d2`` the
    projections of ``x1`` and ``x`` onto the boundary, ``a = clip(||d1|| / (||d1|| + ||d2||), 0, alpha_max)`` and
    ``x1 <- clip((1 - a)(x1 + eta d1) + a (x + eta d2))``; an adversarial result is recorded."""
    model, x, y, opt = random_linear_problem(2)
    eps = opt.min().item()  # the start stays on the correct side, the step crosses the boundary
    attack = FAB(model, eps, steps=1, alpha_max=alpha_max, eta=1.1)
    torch.manual_seed(9)
    best, norms = attack._run(x, y, None, random_start=True)
    torch.manual_seed(9)
    t = 2 * torch.rand_like(x) - 1
    start = (x + 0.5 * eps * t / t.abs().flatten(1).amax(1).view(-1, 1, 1, 1)).clamp(0, 1)
    assert torch.allclose(linf(start, x), torch.full_like(opt, eps / 2))
    w = (model.fc.weight[1 - y] - model.fc.weight[y]).detach()  # boundary: <w, z> + bias difference = 0
    b = -(model.fc.bias[1 - y] - model.fc.bias[y]).detach()
    d1, d2 = linf_projection(start.flatten(1), w, b), linf_projection(x.flatten(1), w, b)
    n1, n2 = d1.abs().amax(1), d2.abs().amax(1)
    a = (n1 / (n1 + n2)).clamp(0, alpha_max)[:, None]
    expected = ((1 - a) * (start.flatten(1) + 1.1 * d1) + a * (x.flatten(1) + 1.1 * d2)).clamp(0, 1).view_as(x)
    assert (n1 / (n1 + n2) > 0.1).any(), "the cap alpha_max would not matter"
    assert fooled(model, expected, y).all()
    assert torch.allclose(best, expected, atol=1e-6) and torch.allclose(norms, linf(expected, x), atol=1e-6)


def test_results_stay_in_the_ball_and_the_box_where_the_box_binds():
    """Pixels at and near the box edges, large weights: the exact projection keeps FAB inside [0, 1]."""
    g = torch.Generator().manual_seed(5)
    model = LinearNet(3 * torch.randn(3, 16, generator=g), torch.zeros(3))
    x = torch.rand(10, 1, 4, 4, generator=g)
    x[:, 0, 0, :3] = torch.tensor([0.0, 1.0, 0.01])
    with torch.no_grad():
        y = model(x).argmax(1)
    for eps in (0.02, 0.1, 0.5):
        for k in (0, 2):
            attack = FAB(model, eps, steps=20, restarts=2, n_target_classes=k)
            x_adv = attack(x, y)
            assert x_adv.min() >= 0 and x_adv.max() <= 1 and linf(x_adv, x).max() <= eps + 1e-6
            hit = fooled(model, x_adv, y)
            assert torch.equal(hit, attack.last_norms <= eps)
            assert torch.equal(x_adv[~hit], x[~hit])


def test_already_misclassified_samples_are_returned_with_norm_zero():
    model, x, y, _ = random_linear_problem(3, batch=6)
    wrong = (y + 1) % 3
    y_mixed = torch.where(torch.arange(6) % 2 == 0, wrong, y)
    attack = FAB(model, 0.3, steps=10)
    x_adv = attack(x, y_mixed)
    assert torch.equal(x_adv[::2], x[::2]) and (attack.last_norms[::2] == 0).all()
    assert (attack.last_norms[1::2] > 0).all() and fooled(model, x_adv, y_mixed).all()


def test_restarts_and_the_random_generator():
    """The first run starts at x (no random number drawn, as the reference); later restarts draw random starts."""
    model, x, y, opt = random_linear_problem(3)
    state = torch.get_rng_state()
    FAB(model, 0.3, steps=5, n_target_classes=2)(x, y)
    assert torch.equal(torch.get_rng_state(), state), "a run from x used the RNG"
    a = FAB(model, 0.5 * opt.min().item(), steps=5, restarts=3)(x, y)  # nothing reachable: every restart runs
    assert not torch.equal(torch.get_rng_state(), state), "restarts drew no random start"
    assert torch.equal(a, x)


# -------------------------------------------------------------------------------------------------------- EOT
@pytest.mark.parametrize("n_target_classes", [0, 1])
def test_eot_forward_passes_grow_by_m_per_gradient(n_target_classes):
    """One clean pass, then per iteration one gradient pass and one prediction pass: each costs eot images."""
    g = torch.Generator().manual_seed(2)
    weight = torch.randn(3, 16, generator=g)
    model = LinearNet(weight, torch.tensor([10.0, 0.0, 0.0]) - 0.5 * weight.sum(1), noise=0.01)  # class 0, far
    x = 0.4 + 0.2 * torch.rand(5, 1, 4, 4, generator=g)
    y = torch.zeros(5, dtype=torch.long)
    with torch.no_grad():
        assert (model.fc(x.flatten(1)).argmax(1) == 0).all()
    for m in (1, 3):
        attack = FAB(model, 0.01, steps=4, n_target_classes=n_target_classes, eot=m)  # eps too small to fool
        assert torch.equal(attack(x, y), x)
        passes = m * 5 * (1 + 2 * 4)  # + 10-draw confirmations where the mean logits call a point fooled
        assert attack.forward_passes >= passes and (attack.forward_passes - passes) % attack.score_draws == 0


def test_logit_jacobian_is_the_mean_over_the_same_draws_as_objective_and_gradient():
    model = TinyNet(1, 4, 3, noise=0.5)
    x = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0, 1])
    attack = FAB(model, EPS, eot=4)
    torch.manual_seed(7)
    logits, jac = attack._logit_jacobian(x)
    assert attack.forward_passes == 4 * 5
    for c in range(3):
        torch.manual_seed(7)
        _, z, grad = attack.objective_and_gradient(x, y, loss_fn=lambda out, _, c=c: out[:, c])
        assert torch.allclose(z, logits, atol=1e-6) and torch.allclose(grad.flatten(1), jac[:, c], atol=1e-6)
    torch.manual_seed(7)
    one = FAB(model, EPS)._logit_jacobian(x)[1]
    assert not torch.allclose(one, jac), "the draws were not averaged"


# ------------------------------------------------------------------------------------- real images, real SNN
def test_fab_t_on_real_images_and_the_model_is_left_alone(trained_lenet, fmnist_eval):
    """Measured on the 64 images: clean 18 wrong; FAB-T (3 steps, 3 targets) 27 wrong, the same with 5 or 10
    steps (PGD7 27); every fooled sample has its reported norm <= eps and the rest get x back."""
    x, y = fmnist_eval
    before = {k: v.clone() for k, v in trained_lenet.state_dict().items()}
    clean = fooled(trained_lenet, x, y).sum().item()
    attack = FAB(trained_lenet, EPS, steps=3, n_target_classes=3)
    x_adv = attack(x, y)
    hit = fooled(trained_lenet, x_adv, y)
    assert hit.sum().item() >= clean + 6, f"FAB-T fooled {hit.sum().item()} samples, clean errors {clean}"
    assert torch.equal(hit, attack.last_norms <= EPS) and torch.equal(x_adv[~hit], x[~hit])
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    assert linf(x_adv, x).max().item() <= EPS + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1

    small = FAB(trained_lenet, EPS, steps=2)  # untargeted: every class's gradient, from one forward pass
    x_small = small(x[:4], y[:4])
    assert linf(x_small, x[:4]).max().item() <= EPS + 1e-6
    assert small.forward_passes == 4 + 2 * 2 * (~fooled(trained_lenet, x[:4], y[:4])).sum().item()

    assert not trained_lenet.training, "FAB switched the model to train mode"
    after = trained_lenet.state_dict()
    assert all(torch.equal(before[k], v) for k, v in after.items()), "parameters or buffers changed"
    assert all(p.grad is None for p in trained_lenet.parameters()), "FAB accumulated parameter gradients"


def test_surrogate_argument_reaches_fab(trained_lenet, fmnist_eval):
    x, y = fmnist_eval[0][:8], fmnist_eval[1][:8]
    own = FAB(trained_lenet, EPS, steps=2, n_target_classes=1)
    triangle = FAB(trained_lenet, EPS, steps=2, n_target_classes=1, grad="triangle")
    own(x, y)
    triangle(x, y)
    assert not torch.equal(own.last_norms, triangle.last_norms)
    assert triangle.settings()["grad"]["name"] == "triangle"


# ------------------------------------------------------------------------------------------------ arguments
@pytest.mark.parametrize("kwargs,name", [
    ({"steps": 0}, "steps"), ({"restarts": 0}, "restarts"), ({"eta": 0.9}, "eta"), ({"eta": "x"}, "eta"),
    ({"beta": 0.0}, "beta"), ({"beta": 1.0}, "beta"), ({"alpha_max": 1.5}, "alpha_max"),
    ({"alpha_max": -0.1}, "alpha_max"), ({"n_target_classes": -1}, "n_target_classes"),
    ({"n_target_classes": 1.5}, "n_target_classes"), ({"n_target_classes": True}, "n_target_classes"),
    ({"targeted": True}, "n_target_classes"), ({"loss": "ce"}, "loss"), ({"eot": 0}, "eot"),
])
def test_bad_arguments_raise_value_errors_naming_them(kwargs, name):
    model = TinyNet()
    with pytest.raises(ValueError, match=name):
        FAB(model, EPS, **kwargs)
    with pytest.raises(ValueError, match="eps"):
        FAB(model, 2.0)


def test_settings_and_name():
    attack = FAB(TinyNet(), EPS, n_target_classes=9)
    assert isinstance(attack, Attack) and FAB.name == "fab" and attack.last_norms is None
    s = attack.settings()
    assert s["attack"] == "FAB" and s["targeted"] is False
    assert {k: s[k] for k in ("steps", "restarts", "eta", "beta", "alpha_max", "n_target_classes")} == {
        "steps": 100, "restarts": 1, "eta": 1.05, "beta": 0.9, "alpha_max": 0.1, "n_target_classes": 9}
