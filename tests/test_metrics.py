"""QTE (METHODS 4), eps sweeps and their plot, on a LeNet SNN trained on real FashionMNIST."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from spikeshield.attacks.registry import make_attack
from spikeshield.evaluation import SweepResult, eps_sweep, evaluate, qte, qte_from_result
from spikeshield.report import plot_sweep


# ------------------------------------------------------------------------------------------------------------ QTE
def test_qte_reproduces_the_papers_f_qte_check():
    # RSC-SNN Table 3, CIFAR10 ANN: clean 90.95 %, FGSM 10.89 % at 8/255 -> F-QTE 4.07
    assert round(qte([(0, 0.9095), (8, 0.1089)]), 2) == 4.07


def test_qte_reproduces_the_papers_p_qte_check():
    assert round(qte([(0, 0.8029), (8, 0.3728)]), 2) == 4.70


#: RSC-SNN Table 3 (CIFAR10, VGG-5) and Table 6 rows: clean, FGSM, PGD accuracy (%) at 8/255, then F-QTE, P-QTE
PAPER_ROWS = [
    ("ANN", 90.95, 10.89, 0.12, 4.07, 3.64),
    ("Direct", 90.69, 6.19, 0.03, 3.88, 3.63),
    ("Poisson", 83.18, 31.20, 22.16, 4.58, 4.21),
    ("RSC-0.1", 80.29, 51.29, 37.28, 5.26, 4.70),
    ("RSC-0.5", 78.67, 66.61, 58.94, 5.81, 5.50),
    ("RSC-0.1 + E-RSCT", 82.03, 54.52, 39.98, 5.46, 4.88),
]


@pytest.mark.parametrize(("row", "clean", "fgsm", "pgd", "f_qte", "p_qte"), PAPER_ROWS, ids=[r[0] for r in PAPER_ROWS])
def test_qte_reproduces_the_papers_table_values_from_its_accuracies(row, clean, fgsm, pgd, f_qte, p_qte):
    assert round(qte([(0, clean / 100), (8, fgsm / 100)]), 2) == f_qte
    assert round(qte([(0, clean / 100), (8, pgd / 100)]), 2) == p_qte


def test_every_evaluation_at_8_255_carries_f_qte_and_p_qte():
    """evaluate at 8/255 records each attack's QTE from its own clean and robust accuracy; other budgets none."""
    from spikeshield.evaluation.metrics import qte_at_8

    values = qte_at_8(8 / 255, 0.8029, {"fgsm": 0.5129, "pgd7": 0.3728})
    assert round(values["fgsm"], 2) == 5.26 and round(values["pgd7"], 2) == 4.70
    assert qte_at_8(4 / 255, 0.8, {"fgsm": 0.5}) == {}


def test_qte_two_points_is_symmetric_in_order():
    assert qte([(8, 0.1089), (0, 0.9095)]) == qte([(0, 0.9095), (8, 0.1089)])


def test_qte_trapezoid_over_three_or_more_points():
    # by hand: (2-0)(0.9+0.7)/2 + (4-2)(0.7+0.4)/2 + (8-4)(0.4+0.1)/2 = 1.6 + 1.1 + 1.0 = 3.7
    points = [(4, 0.4), (0, 0.9), (8, 0.1), (2, 0.7)]   # unsorted on purpose
    assert qte(points) == pytest.approx(3.7, abs=1e-12)
    assert qte([(0, 1.0), (4, 0.5), (8, 0.0)]) == pytest.approx(4.0)
    # the sweep's area equals the sum of the two-point QTEs of consecutive pieces
    assert qte(points) == pytest.approx(qte([(0, 0.9), (2, 0.7)]) + qte([(2, 0.7), (4, 0.4)]) + qte([(4, 0.4),
                                                                                                     (8, 0.1)]))


@pytest.mark.parametrize(
    ("points", "message"),
    [
        ([], "at least two"),
        ([(0, 0.9)], "at least two"),
        ([(0, 0.9), (8, 1.2)], r"\[0, 1\]"),
        ([(0, 90.95), (8, 10.89)], "divide percentages by 100"),
        ([(0, 0.9), (8, -0.1)], r"\[0, 1\]"),
        ([(-1, 0.9), (8, 0.1)], "eta must be >= 0"),
        ([(0, 0.9), (0, 0.5)], "distinct eta"),
        ([(0, 0.9), (8, float("nan"))], "non-finite"),
        ([(0, 0.9), (8,)], "pair of numbers"),
        ([(0, 0.9), ("a", 0.1)], "pair of numbers"),
    ],
)
def test_qte_rejects_bad_points(points, message):
    with pytest.raises(ValueError, match=message):
        qte(points)


def _fake_result(**kw):
    base = dict(eps=8 / 255, clean_acc=0.8029, robust_acc={"fgsm": 0.1089, "pgd7": 0.3728})
    return SimpleNamespace(**{**base, **kw})


def test_qte_from_result_uses_eps_in_1_over_255_units():
    result = _fake_result()
    assert round(qte_from_result(result, "pgd7"), 2) == 4.70
    assert qte_from_result(result, "PGD") == qte_from_result(result, "pgd7")     # unique prefix, any case
    assert qte_from_result(result, "fgsm") == pytest.approx(8 * (0.8029 + 0.1089) / 2)
    assert qte_from_result(_fake_result(eps=4 / 255), "fgsm") == pytest.approx(4 * (0.8029 + 0.1089) / 2)


def test_qte_from_result_errors():
    with pytest.raises(ValueError, match="not among"):
        qte_from_result(_fake_result(), "apgd")
    with pytest.raises(ValueError, match="several"):
        qte_from_result(_fake_result(robust_acc={"pgd7": 0.3, "pgd20": 0.2}), "pgd")
    with pytest.raises(ValueError, match="eps > 0"):
        qte_from_result(_fake_result(eps=0.0), "fgsm")


def test_qte_from_a_real_evaluation(trained_lenet, fmnist_eval):
    x, y = fmnist_eval
    result = evaluate(trained_lenet, x[:16], y[:16], attacks="fgsm", eps=8 / 255, progress=False)
    expected = 8 * (result.clean_acc + result.robust_acc["fgsm"]) / 2
    assert qte_from_result(result, "fgsm") == pytest.approx(expected)


# ------------------------------------------------------------------------------------------------------ eps sweep
EPS = (0, 4 / 255, 8 / 255)


def _pgd3(model, eps):
    return make_attack("pgd7", model, eps, steps=3, alpha=eps / 2)


@pytest.fixture(scope="module")
def sweep(trained_lenet, fmnist_eval):
    """A sweep of FGSM and 3-step PGD over 32 real images at eps 0, 4/255, 8/255 (given out of order)."""
    x, y = fmnist_eval
    return eps_sweep(trained_lenet, x[:32], y[:32], attacks=["fgsm", _pgd3], eps_list=(8 / 255, 0, 4 / 255),
                     batch_size=16, progress=False)


def test_sweep_shape_and_clean_point(sweep, trained_lenet, fmnist_eval):
    x, y = fmnist_eval
    assert sweep.eps == sorted(EPS) and sweep.eta == [0, 4, 8]
    assert sweep.attacks == ["fgsm", "pgd7"] and set(sweep.robust_acc) == {"fgsm", "pgd7"}
    assert sweep.n_examples == 32 and len(sweep.results) == 3
    with torch.no_grad():
        clean = (trained_lenet(x[:32]).argmax(1) == y[:32]).float().mean().item()
    assert sweep.clean_acc == pytest.approx(clean)
    for acc in sweep.robust_acc.values():
        assert acc[0] == sweep.clean_acc                      # eps 0: no attack, accuracy = clean accuracy
        assert all(0 <= a <= sweep.clean_acc for a in acc)   # robust accuracy never exceeds clean
    assert sweep.worst_case_acc[0] == sweep.clean_acc
    assert sweep.results[0].robust_acc == {}                  # eps 0 ran no attack


def test_sweep_accuracy_drops_with_eps(sweep):
    pgd, fgsm = sweep.robust_acc["pgd7"], sweep.robust_acc["fgsm"]
    assert pgd[-1] < sweep.clean_acc and fgsm[-1] < sweep.clean_acc
    assert pgd[0] >= pgd[1] >= pgd[2]                         # holds for this model; random start kept fixed (seed)
    # the worst case counts a sample only if every attack fails on it
    for i in range(3):
        assert sweep.worst_case_acc[i] <= min(fgsm[i], pgd[i])


def test_sweep_qte_is_the_trapezoid_over_the_curve(sweep):
    values = sweep.qte()
    assert set(values) == {"fgsm", "pgd7"}
    for name, acc in sweep.robust_acc.items():
        assert values[name] == pytest.approx(4 * (acc[0] + acc[1]) / 2 + 4 * (acc[1] + acc[2]) / 2)
    assert sweep.qte("pgd") == values["pgd7"]
    # the 8/255 run gives the paper's two-point QTE, recorded in the result itself; the 4/255 run records none
    assert qte_from_result(sweep.results[2], "fgsm") == pytest.approx(8 * (sweep.clean_acc + sweep.robust_acc[
        "fgsm"][2]) / 2)
    assert sweep.results[2].qte == pytest.approx({name: qte_from_result(sweep.results[2], name) for name in values})
    assert sweep.results[1].qte == {}


def test_sweep_json_round_trip(sweep, tmp_path):
    path = sweep.save_json(tmp_path / "out" / "sweep.json")
    data = json.loads(path.read_text())
    assert data["schema"] == "spikeshield.sweep/1" and data["eta"] == [0, 4, 8]
    assert data["qte"] == pytest.approx(sweep.qte())
    assert not list(path.parent.glob("*.tmp"))                # atomic write leaves no temporary file
    back = SweepResult.load_json(path)
    assert back.to_dict() == sweep.to_dict()
    assert back.results[1].robust_acc == sweep.results[1].robust_acc
    with pytest.raises(ValueError, match="schema"):
        SweepResult.from_dict({**data, "schema": "other/9"})


def test_sweep_plot_writes_a_png(sweep, tmp_path):
    reference = {"paper PGD (made up)": [(0, 0.9), (4, 0.5), (8, 0.2)]}
    path = sweep.plot(tmp_path / "plots" / "sweep.png", reference=reference)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000
    with pytest.raises(ValueError, match="fraction"):
        plot_sweep(sweep, tmp_path / "bad.png", reference={"paper": [(0, 90.0), (8, 20.0)]})


def test_sweep_argument_errors(trained_lenet, fmnist_eval):
    x, y = fmnist_eval
    x, y = x[:4], y[:4]
    with pytest.raises(ValueError, match="at least two budgets"):
        eps_sweep(trained_lenet, x, y, attacks="fgsm", eps_list=(8 / 255,), progress=False)
    with pytest.raises(ValueError, match="at least two budgets"):
        eps_sweep(trained_lenet, x, y, attacks="fgsm", eps_list=(0,), progress=False)
    with pytest.raises(ValueError, match="repeated"):
        eps_sweep(trained_lenet, x, y, attacks="fgsm", eps_list=(0, 8 / 255, 8 / 255), progress=False)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        eps_sweep(trained_lenet, x, y, attacks="fgsm", eps_list=(0, 8), progress=False)
    with pytest.raises(ValueError, match="unknown attack"):
        eps_sweep(trained_lenet, x, y, attacks="fgsmm", eps_list=(0, 8 / 255), progress=False)
    with pytest.raises(TypeError, match="fixed eps"):
        eps_sweep(trained_lenet, x, y, attacks=[make_attack("fgsm", trained_lenet, 8 / 255)],
                  eps_list=(0, 8 / 255), progress=False)
    with pytest.raises(ValueError, match="one-shot"):
        eps_sweep(trained_lenet, iter([(x, y)]), attacks="fgsm", eps_list=(0, 8 / 255), progress=False)


def test_sweep_accepts_batches(trained_lenet, fmnist_eval):
    x, y = fmnist_eval
    batches = [(x[:8], y[:8]), (x[8:16], y[8:16])]
    a = eps_sweep(trained_lenet, batches, attacks="fgsm", eps_list=(0, 8 / 255), progress=False)
    b = eps_sweep(trained_lenet, x[:16], y[:16], attacks="fgsm", eps_list=(0, 8 / 255), progress=False)
    assert a.robust_acc == b.robust_acc and a.n_examples == 16
