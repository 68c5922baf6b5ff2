"""Tests of the Square attack (score-based, L-inf): the eps-ball contract, no gradients, closed-form optima,
real-image strength, query accounting, EOT, restarts, reproducibility and argument checks."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TinyNet, binary_problem, fooled, margin

from spikeshield.attacks.square import Square, p_selection

EPS = 8 / 255


class RecordingNet(TinyNet):
    """A TinyNet that records every batch it is sent (before its own noise)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.detach().clone())
        return super().forward(x)


class NoGradNet(TinyNet):
    """A TinyNet that refuses to run with gradients enabled or on inputs that require a gradient."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or x.requires_grad:
            raise RuntimeError("the model was run with gradients enabled")
        return super().forward(x)


def random_tiny(channels=1, size=4, classes=3, seed=0, **kw) -> tuple[TinyNet, torch.Tensor, torch.Tensor]:
    """A recording TinyNet with random weights, 8 random images and its noise-free predictions as labels."""
    g = torch.Generator().manual_seed(seed)
    model = RecordingNet(channels, size, classes, **kw)
    with torch.no_grad():
        model.fc.weight.copy_(torch.randn(classes, channels * size * size, generator=g))
        model.fc.bias.zero_()
        x = torch.rand(8, channels, size, size, generator=g)
        y = model.fc(torch.tanh(3 * x).flatten(1)).argmax(1)
    model.inputs.clear()
    return model, x, y


# --------------------------------------------------------------------------------------------- the contract
def test_square_output_stays_in_the_ball_and_keeps_dtype_and_shape():
    model = TinyNet(3, 5, 4).double()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 5, 5, generator=g, dtype=torch.float64)
    x[:, :, 0, 0], x[:, :, 0, 1] = 0.0, 1.0  # pixels on the box's edges: the ball is clipped there
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    eps = 0.1
    x_adv = Square(model, eps, n_queries=30)(x, y)
    assert x_adv.dtype == torch.float64 and x_adv.shape == x.shape and not x_adv.requires_grad
    assert (x_adv - x).abs().max().item() <= eps + 1e-12
    assert x_adv.min().item() >= 0 and x_adv.max().item() <= 1
    assert (x_adv != x).any()
    # away from the box's edges every pixel sits on a corner of the ball (stripes and squares move by +-eps)
    inside = (x > eps) & (x < 1 - eps)
    assert torch.allclose((x_adv - x).abs()[inside], torch.full_like(x[inside], eps))


def test_square_never_computes_gradients(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the Square attack asked for a gradient")

    monkeypatch.setattr(torch.autograd, "grad", forbidden)
    monkeypatch.setattr(torch.Tensor, "backward", forbidden)
    model = NoGradNet(1, 4, 3)
    x, y = torch.rand(5, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1])
    attack = Square(model, 0.1, n_queries=20, restarts=2, eot=2, loss="ce")
    x_adv = attack(x, y)
    assert attack.forward_passes > 0 and (x_adv != x).any()
    assert all(p.grad is None for p in model.parameters())


# ------------------------------------------------------------------------------------------ closed-form optima
@pytest.mark.parametrize("loss", ["margin", "ce"])
@pytest.mark.parametrize("eps", [0.05, 0.3])
def test_square_fools_every_foolable_sample_of_the_binary_model(eps, loss):
    """Measured (seeds 0-19, both losses, both budgets): 200 queries fool every sample whose optimal margin is
    negative and bring every other sample exactly to the optimal corner (100 queries already do)."""
    model, x, y, x_star = binary_problem(eps)
    optimum = margin(model, x_star, y)
    foolable = optimum < 0
    assert foolable.any()
    attack = Square(model, eps, n_queries=200, loss=loss)
    m = margin(model, attack(x, y), y)
    assert (m[foolable] < 0).all(), (m, optimum)
    assert torch.allclose(m[~foolable], optimum[~foolable], atol=1e-4), (m, optimum)
    assert (m >= optimum - 1e-5).all(), "beat the exact optimum: the ball was left"
    assert (attack.last_queries[~foolable] == 200).all() and (attack.last_queries[foolable] < 200).all()


@pytest.mark.parametrize("loss", ["margin", "ce"])
def test_targeted_square_reaches_the_target_on_the_binary_model(loss):
    eps = 0.05
    model, x, y, x_star = binary_problem(eps)
    reachable = margin(model, x_star, y) < 0
    target = 1 - y
    x_adv = Square(model, eps, n_queries=200, targeted=True, loss=loss)(x, target)
    with torch.no_grad():
        pred = model(x_adv).argmax(1)
    assert (pred[reachable] == target[reachable]).all()
    assert (pred[~reachable] == y[~reachable]).all()


def test_square_windows_reach_the_last_row_and_column():
    """Only the bottom-right pixel matters and the class cannot change: every sample must end with that pixel on
    its optimal side. Square windows must be able to cover the last row and column (the reference draws window
    corners in ``[0, H - s)``, so after the first iterations a wrongly initialised last pixel stays wrong)."""
    model = TinyNet(1, 4, 2)
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.weight[0, -1] = 1.0
        model.fc.bias.copy_(torch.tensor([10.0, 0.0]))  # class 0 always wins
    x = torch.full((16, 1, 4, 4), 0.5)
    y = torch.zeros(16, dtype=torch.long)
    eps = 0.1
    x_adv = Square(model, eps, n_queries=60)(x, y)
    assert torch.allclose(x_adv[:, 0, -1, -1], torch.full((16,), 0.5 - eps))


# ----------------------------------------------------------------------------------------- real images, real SNN
def test_square_lowers_accuracy_on_real_images(trained_lenet, fmnist_eval):
    """Measured on the 64 images (seeds 0-7, in this order): clean 18 wrong; the stripes alone (1 query) 19-21;
    Square with 100 queries 25-27 wrong, i.e. 11-14 accuracy points lost (300 queries: 27-28 at three times the
    cost, so the test keeps 100)."""
    x, y = fmnist_eval
    clean = fooled(trained_lenet, x, y).sum().item()
    stripes = fooled(trained_lenet, Square(trained_lenet, EPS, n_queries=1)(x, y), y).sum().item()
    attack = Square(trained_lenet, EPS, n_queries=100)
    x_adv = attack(x, y)
    wrong = fooled(trained_lenet, x_adv, y)
    assert (x_adv - x).abs().max().item() <= EPS + 1e-6
    assert wrong.sum().item() >= clean + 5, f"Square fooled {wrong.sum().item()} samples, clean errors {clean}"
    assert wrong.sum().item() >= stripes + 3, f"the search added little to the stripes ({wrong.sum()} vs {stripes})"
    # samples that stopped early are fooled, the others used the whole budget
    assert wrong[attack.last_queries < 100].all() and (attack.last_queries[~wrong] == 100).all()
    assert attack.forward_passes == attack.last_queries.sum().item()
    assert not trained_lenet.training and all(p.grad is None for p in trained_lenet.parameters())


# ------------------------------------------------------------------------------------------------ query counts
def test_square_queries_only_unfooled_samples_and_respects_the_budget():
    model, x, y = random_tiny()
    eps, n = 0.15, 40
    attack = Square(model, eps, n_queries=n)
    x_adv = attack(x, y)
    queries = attack.last_queries
    assert queries.dtype == torch.long and queries.shape == (8,)
    assert (queries >= 1).all() and (queries <= n).all()
    sizes = [len(b) for b in model.inputs]
    assert len(sizes) <= n and sizes == sorted(sizes, reverse=True), sizes  # the open set only shrinks
    assert sum(sizes) == attack.forward_passes == queries.sum().item()
    # query i goes to exactly the samples that used more than i queries
    assert sizes == [(queries > i).sum().item() for i in range(len(sizes))]
    now_fooled = fooled(model, x_adv, y)
    assert 0 < now_fooled.sum() < 8, "pick eps so that some but not all samples are fooled"
    assert now_fooled[queries < n].all() and (queries[~now_fooled] == n).all()


def test_square_with_eot_sends_m_copies_per_query():
    model, x, y = random_tiny(noise=0.1)
    assert model.is_stochastic
    m = 3
    attack = Square(model, 0.1, n_queries=15, eot=m)
    attack(x, y)
    queries = m * attack.last_queries.sum().item()  # + 10-draw confirmations of queries that look successful
    assert attack.forward_passes >= queries and (attack.forward_passes - queries) % attack.score_draws == 0
    assert sum(len(b) for b in model.inputs) == attack.forward_passes
    for batch in model.inputs:  # one forward pass per query (or confirmation): the samples repeated m (or 10) times
        k = m if len(batch) % m == 0 and not len(batch) % attack.score_draws == 0 else attack.score_draws
        copies = batch.view(k, len(batch) // k, *batch.shape[1:])
        assert torch.equal(copies, copies[:1].expand_as(copies))


def test_square_restarts_run_only_on_unfooled_samples_and_keep_the_fooled_ones():
    model, x, y = random_tiny()
    eps, n = 0.15, 5
    torch.manual_seed(4)
    one = Square(model, eps, n_queries=n)
    x_one = one(x, y)
    torch.manual_seed(4)
    three = Square(model, eps, n_queries=n, restarts=3)
    x_three = three(x, y)
    first = fooled(model, x_one, y)
    assert first.any() and torch.equal(x_three[first], x_one[first])
    assert torch.equal(three.last_queries[first], one.last_queries[first])
    now = fooled(model, x_three, y)
    assert (now >= first).all()
    assert (three.last_queries <= 3 * n).all() and (three.last_queries[~now] == 3 * n).all()
    assert (three.last_queries[now & ~first] > n).all()


def test_square_is_reproducible_under_manual_seed():
    model, x, y = random_tiny()
    attack = Square(model, 0.1, n_queries=20)
    torch.manual_seed(3)
    a = attack(x, y)
    torch.manual_seed(3)
    b = attack(x, y)
    assert torch.equal(a, b)
    assert not torch.equal(a, attack(x, y)), "Square ignored the random generator"


# ------------------------------------------------------------------------------------------ schedule and settings
def test_p_selection_follows_the_reference_schedule():
    assert [p_selection(0.8, it, 10000) for it in (0, 10, 11, 50, 51, 200, 201, 500, 501, 1000, 1001)] == \
        pytest.approx([0.8, 0.8, 0.4, 0.4, 0.2, 0.2, 0.1, 0.1, 0.05, 0.05, 0.025])
    assert [p_selection(0.8, it, 10000) for it in (2001, 4001, 6001, 8000, 8001, 9999)] == \
        pytest.approx([0.8 / 64, 0.8 / 128, 0.8 / 256, 0.8 / 256, 0.8 / 512, 0.8 / 512])
    # rescaled to the budget: iteration 1 of 100 is iteration 100 of 10000
    assert p_selection(0.8, 0, 100) == 0.8 and p_selection(0.8, 1, 100) == pytest.approx(0.2)


def test_square_settings_and_surrogate():
    model = TinyNet(1, 4, 3)
    with pytest.raises(ValueError, match="has none"):  # a gradient mode needs spiking neurons to act on
        Square(model, EPS, grad="triangle")
    attack = Square(model, EPS, targeted=True, eot=2)
    s = attack.settings()
    json.dumps(s)
    assert (s["attack"], s["loss"], s["n_queries"], s["p_init"], s["restarts"]) == ("Square", "margin", 5000, 0.8, 1)
    assert s["grad"] == "own" and s["targeted"] and s["eot"] == 2
    assert Square.name == "square" and Square(model, EPS, loss="ce").settings()["loss"] == "ce"
    attack.n_queries = 10  # the defaults above, a small budget for the run below
    x = torch.rand(4, 1, 4, 4)
    x_adv = attack(x, torch.tensor([0, 1, 2, 0]))
    assert attack.forward_passes == 2 * attack.last_queries.sum().item() <= 2 * 4 * 10
    assert (x_adv - x).abs().max().item() <= EPS + 1e-6


def test_square_bad_arguments_are_clear_errors():
    model = TinyNet(1, 4, 3)
    for kwargs, name in [({"n_queries": 0}, "n_queries"), ({"n_queries": 2.5}, "n_queries"),
                         ({"p_init": 0}, "p_init"), ({"p_init": 1.5}, "p_init"), ({"p_init": "big"}, "p_init"),
                         ({"loss": "dlr"}, "loss"), ({"loss": "cw"}, "loss"), ({"restarts": 0}, "restarts"),
                         ({"eot": 0}, "eot")]:
        with pytest.raises(ValueError, match=name):
            Square(model, EPS, **kwargs)
    with pytest.raises(ValueError, match="eps"):
        Square(model, 1.5)
