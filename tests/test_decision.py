"""The decision rule for random models (issue 16): majority verdicts, expected accuracy, the worst case judged on the
strongest point with fresh draws, attacks that do not stop at borderline points, and models that declare nothing."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import binom
from torch import nn

from spikeshield import decision
from spikeshield.attacks import APGDT, BIM, PGD, Transfer, make_attack
from spikeshield.evaluation import eps_sweep, evaluate
from spikeshield.evaluation.robustness import _build_attacks
from spikeshield.models import create_model

EPS = 8 / 255
CLASSES = 10


class CodedClasses(nn.Module):
    """A random classifier no L-inf attack at 8/255 can move: it reads the class ``c`` written into pixel (0, 0, 0)
    as ``c / 9`` and answers it with probability ``p[c]`` per draw, else class ``c + 1``. Its gradient is zero."""

    def __init__(self, p: float | list[float], declare: bool = True) -> None:
        super().__init__()
        self.register_buffer("p", torch.as_tensor(p, dtype=torch.float64).expand(CLASSES).clone())
        if declare:
            self.is_stochastic = True
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        code = (x[:, 0, 0, 0] * 9).round().long().clamp(0, CLASSES - 1)
        right = torch.rand(x.shape[0], device=x.device, dtype=torch.float64) < self.p[code]
        answer = torch.where(right, code, (code + 1) % CLASSES)
        return 4 * F.one_hot(answer, CLASSES).float() + 0 * x.flatten(1).sum(1, keepdim=True)


def coded_images(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images whose pixel (0, 0, 0) spells their label (classes 0..9 only use 0..8 so c/9 <= 1)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 9, (n,), generator=g)
    x = torch.rand(n, 1, 4, 4, generator=g) * 0.5 + 0.25
    x[:, 0, 0, 0] = y.float() / 9
    return x, y


def majority_probability(p: float, draws: int = decision.DEFAULT_SCORE_DRAWS) -> float:
    """P(the right class strictly out-votes the single wrong one) over ``draws`` draws: P(Bin(draws, p) > draws/2)."""
    return float(binom.sf(draws // 2, draws, p))


def test_a_tie_never_counts_as_a_win():
    votes = torch.tensor([[5, 5, 0], [6, 4, 0], [0, 0, 10]])
    scores = decision.Scores(votes=votes, logits=votes.double(), draws=10)
    assert scores.wins(torch.tensor([0, 0, 2])).tolist() == [False, True, True]
    assert scores.fraction(torch.tensor([0, 1, 2])).tolist() == [0.5, 0.4, 1.0]


@pytest.mark.parametrize("cascade", [False, True])
def test_an_unmovable_random_model_keeps_its_majority_accuracy_as_worst_case(cascade):
    """The issue's check: p = 0.7 per draw and no attack can move it. The old rule (one draw per verdict, minimum
    over five attacks) reported about 0.7^6 = 0.12; the majority accuracy P(Bin(10, 0.7) >= 6) = 0.85 must stay,
    also when the attacks run as a cascade."""
    model = CodedClasses(0.7)
    x, y = coded_images(300)
    result = evaluate(model, x, y, attacks="fgsm,rfgsm,bim7,pgd7,mifgsm", eps=EPS, progress=False, cascade=cascade)
    expected = majority_probability(0.7)
    assert result.stochastic and result.score_draws == decision.DEFAULT_SCORE_DRAWS
    assert result.clean_acc == pytest.approx(expected, abs=0.07)
    assert result.worst_case_acc == pytest.approx(expected, abs=0.07)
    if not cascade:  # a cascade's columns are cumulative; each attack's own column judges the pair (x, x_adv)
        assert all(acc == pytest.approx(expected, abs=0.07) for acc in result.robust_acc.values())
    assert result.expected_acc["worst_case"]["acc"] == pytest.approx(0.7, abs=0.04)


def test_a_deterministic_worst_case_is_correct_under_every_attack():
    model = create_model("lenet", dataset="fashion_mnist", T=2).eval()
    x = torch.rand(12, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    y = torch.arange(12) % CLASSES
    result = evaluate(model, x, y, attacks="fgsm,bim7", eps=EPS, progress=False)
    per = {k: torch.tensor(v) for k, v in result.per_sample.items()}
    assert not result.stochastic and result.score_draws == 1
    assert per["worst_case"].tolist() == (per["clean"] & per["fgsm"] & per["bim7"]).tolist()
    assert result.expected_acc["clean"]["acc"] == result.clean_acc


def test_expected_accuracy_matches_the_closed_form():
    """Classes answered right with p = 0.9 or 0.5 per draw: the expected accuracy is the mean of p over the labels,
    and the estimate's 95% interval holds it."""
    p = [0.9, 0.5] * 5
    model = CodedClasses(p)
    x, y = coded_images(400, seed=3)
    result = evaluate(model, x, y, attacks=[], eps=EPS, progress=False, seed=3)
    truth = torch.tensor(p)[y].mean().item()
    clean = result.expected_acc["clean"]
    assert clean["acc"] == pytest.approx(truth, abs=0.03)
    assert clean["low"] <= truth <= clean["high"]
    majority = sum(majority_probability(p[c]) for c in y.tolist()) / len(y)
    assert result.clean_acc == pytest.approx(majority, abs=0.05)


def test_the_expected_accuracy_interval_covers_at_its_level():
    """Simulated per-point fractions (points of p = 0.9 / 0.5 / 0.2, 10 independent draws each): the 95% interval
    holds the true expected accuracy in about 95% of repetitions."""
    g = torch.Generator().manual_seed(0)
    p = torch.tensor([0.9, 0.5, 0.2]).repeat(50)
    truth = p.mean().item()
    hits = 0
    for _ in range(400):
        points = p[torch.randint(0, len(p), (150,), generator=g)]
        fractions = torch.binomial(torch.full_like(points, 10.0), points, generator=g) / 10
        interval = decision.expected_accuracy(fractions, 10)
        hits += interval["low"] <= truth <= interval["high"]
    assert 0.91 <= hits / 400 <= 0.99
    deterministic = decision.expected_accuracy(torch.tensor([1.0] * 40 + [0.0] * 10), 1)
    assert deterministic["n_eff"] == 50 and deterministic["low"] < 0.8 < deterministic["high"]


def test_success_on_a_random_model_is_confirmed_on_fresh_draws():
    """Logits that say "fooled" are not enough: a point the model answers right 70% of the time is no success."""
    model = CodedClasses(0.7)
    x, y = coded_images(200)
    attack = PGD(model, EPS, steps=2)
    wrong_logits = F.one_hot((y + 1) % CLASSES, CLASSES).float()
    confirmed = attack.succeeded(x, y, wrong_logits)
    assert confirmed.float().mean() < 0.3  # the majority answers right for ~85% of the points
    deterministic = PGD(create_model("lenet", dataset="fashion_mnist", T=2).eval(), EPS, steps=2)
    assert deterministic.succeeded(x, y, wrong_logits).all()  # deterministic: the logits decide


class Window(nn.Module):
    """One pixel ``v``; class 1 wins only while ``|v - centre| < width``, and the cross-entropy of class 0 pulls ``v``
    towards the centre from both sides, so signed steps of ``alpha > width`` jump in and out of the window."""

    centre, width = 0.5 + 0.8 * 0.1, 0.05

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x.flatten(1)[:, :1]
        z1 = 1.0 - ((v - self.centre) / self.width) ** 2
        return torch.cat([torch.zeros_like(z1), z1], 1)


def test_iterative_attacks_return_the_best_iterate_not_the_last():
    x, y = torch.full((3, 1, 1, 1), 0.5), torch.zeros(3, dtype=torch.long)
    model = Window()
    attack = BIM(model, eps=0.3, alpha=0.1, steps=2)  # x -> x + 0.1 (inside: fooled) -> back to x (not fooled)
    x_adv = attack(x, y)
    assert (model(x_adv).argmax(1) == 1).all()
    assert torch.allclose(x_adv, x + 0.1)


def test_apgdt_ranks_its_targets_once_per_sample(monkeypatch):
    class NoisyLogits(nn.Module):
        is_stochastic = True

        def forward(self, x):
            return torch.randn(x.shape[0], CLASSES) + 0 * x.flatten(1).sum(1, keepdim=True)

    attack = APGDT(NoisyLogits(), EPS, steps=1, n_target_classes=4, eot=2)
    targets: list[torch.Tensor] = []

    def fake_run(xs, ys, loss_fn):
        targets.append(loss_fn.__defaults__[0].clone())
        n = xs.shape[0]
        return xs, torch.zeros(n), torch.zeros(n, dtype=torch.bool), xs

    monkeypatch.setattr(attack, "_run", fake_run)
    x, y = coded_images(16)
    attack(x, y)
    per_sample = torch.stack(targets, 1)  # [16, 4]: each sample's target at each rank
    assert all(len(set(row)) == 4 for row in per_sample.tolist())
    assert (per_sample != y[:, None]).all()


def test_an_undeclared_random_model_is_probed_and_judged_as_random():
    model = CodedClasses(0.7, declare=False)
    x, y = coded_images(40)
    with pytest.warns(UserWarning, match="does not declare is_stochastic"):
        result = evaluate(model, x, y, attacks="fgsm", eps=EPS, progress=False)
    assert result.stochastic and result.score_draws == decision.DEFAULT_SCORE_DRAWS
    assert result.attacks["fgsm"]["eot"] == decision.DEFAULT_EOT
    standalone = CodedClasses(0.7, declare=False)
    attack = PGD(standalone, EPS, steps=1)
    with pytest.warns(UserWarning, match="does not declare is_stochastic"):
        attack(x, y)
    assert attack.stochastic and attack.eot == decision.DEFAULT_EOT


def test_an_undeclared_deterministic_model_is_not_warned_about():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, CLASSES)).eval()
    x, y = coded_images(8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = evaluate(model, x, y, attacks="fgsm", eps=EPS, progress=False)
    assert not result.stochastic and result.score_draws == 1 and result.attacks["fgsm"]["eot"] == 1


def test_a_gradient_mode_on_a_model_without_spiking_neurons_is_an_error():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, CLASSES))
    x, y = coded_images(4)
    with pytest.raises(ValueError, match="no spiking|has none.*adapters"):
        PGD(model, EPS, grad="rga")
    with pytest.raises(ValueError, match="has none"):
        evaluate(model, x, y, attacks="pgd7@triangle-0.5", eps=EPS, progress=False)


def test_attacks_are_merged_only_when_they_attack_the_same_model():
    target = create_model("lenet", dataset="fashion_mnist", T=2).eval()
    source_a = create_model("lenet", dataset="fashion_mnist", T=2).eval()
    source_b = create_model("lenet", dataset="fashion_mnist", T=2).eval()  # same config, other weights
    same = [Transfer(target, EPS, source=source_a, attack="fgsm"), Transfer(target, EPS, source=source_a,
                                                                            attack="fgsm")]
    other = [Transfer(target, EPS, source=source_a, attack="fgsm"), Transfer(target, EPS, source=source_b,
                                                                             attack="fgsm")]
    options = dict(eot=None, grad=None, clamp=True, stochastic=False)
    assert list(_build_attacks(target, same, EPS, **options)[0]) == ["transfer-fgsm"]
    assert list(_build_attacks(target, other, EPS, **options)[0]) == ["transfer-fgsm", "transfer-fgsm_2"]
    twin_model = create_model("lenet", dataset="fashion_mnist", T=2).eval()
    pair = [make_attack("fgsm", target, EPS), make_attack("fgsm", twin_model, EPS)]
    assert len(_build_attacks(target, pair, EPS, **options)[0]) == 2


def test_a_sweep_of_a_random_model_records_its_eot_and_draws():
    model = CodedClasses(0.9)
    x, y = coded_images(20)
    sweep = eps_sweep(model, x, y, attacks="fgsm,pgd7", eps_list=(0, 4 / 255, 8 / 255), progress=False, eot=3)
    assert sweep.stochastic and sweep.score_draws == decision.DEFAULT_SCORE_DRAWS
    assert sweep.eot == {"fgsm": 3, "pgd7": 3}
    assert all(r.score_draws == decision.DEFAULT_SCORE_DRAWS for r in sweep.results)
    snn = create_model("lenet", dataset="fashion_mnist", T=2).eval()
    xs = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    swept = eps_sweep(snn, xs, torch.arange(4), attacks="fgsm", eps_list=(0, EPS), progress=False, grad="rga",
                      clamp=False)
    assert swept.results[-1].attacks["fgsm"]["grad"] == "rga" and swept.threat_model == "unclamped"
