"""Tests of spikeshield.evaluation and spikeshield.report: worst-case accounting, MRA, JSON, input forms, tables."""

from __future__ import annotations

import dataclasses
import json
import warnings

import pytest
import torch
from conftest import TinyNet

from spikeshield.attacks import FGSM, PGD
from spikeshield.evaluation import DEFAULT_EOT, EvalResult, evaluate
from spikeshield.report import markdown_table, print_table, write_report

EPS = 8 / 255
ATTACKS = ["fgsm", "rfgsm", "pgd7"]
BATCH = 24  # does not divide the number of images: the last batch is partial


@pytest.fixture(scope="module")
def data(fmnist_eval) -> tuple[torch.Tensor, torch.Tensor]:
    """64 real FashionMNIST test images and their true labels (the model gets about 30% of them wrong)."""
    return fmnist_eval


@pytest.fixture(scope="module")
def result(trained_lenet, data) -> EvalResult:
    return evaluate(trained_lenet, *data, attacks=ATTACKS, eps=EPS, batch_size=BATCH, seed=0, progress=False)


def test_worst_case_robust_clean_ordering_and_mra(trained_lenet, data, result):
    x, y = data
    with torch.no_grad():
        correct = (trained_lenet(x).argmax(1) == y).tolist()
    assert result.per_sample["clean"] == correct
    assert result.clean_acc == pytest.approx(sum(correct) / len(correct))
    assert 0.6 <= result.clean_acc < 1, "the trained LeNet should be far above chance (0.1) and not perfect"
    assert list(result.robust_acc) == ATTACKS
    for name, acc in result.robust_acc.items():
        assert result.worst_case_acc <= acc <= result.clean_acc, name
        assert 0 <= result.adv_acc[name] <= 1
    assert result.mra == min(result.robust_acc.values())
    assert result.worst_case_acc <= result.mra
    assert result.robust_acc["pgd7"] <= result.clean_acc - 0.1, "PGD barely hurt a model with real gradients"
    assert result.n_examples == len(y) and result.seeds == [0] and result.flags == []


def test_per_sample_accounting(result):
    per = {k: torch.tensor(v) for k, v in result.per_sample.items()}
    worst = per["clean"].clone()
    for name in ATTACKS:
        assert result.robust_acc[name] == pytest.approx((per["clean"] & per[name]).float().mean().item())
        worst &= per[name]
    assert result.worst_case_acc == pytest.approx(worst.float().mean().item())


def test_counts_times_and_provenance(data, result):
    n = len(data[1])
    passes = result.number_forward_passes
    # FGSM: one gradient + the verdict; PGD7: 7 gradients, the last iterate's loss (best-iterate) + the verdict
    assert passes["clean"] == n and passes["fgsm"] == 2 * n and passes["pgd7"] == 9 * n
    assert passes["total"] == sum(v for k, v in passes.items() if k != "total")
    assert set(result.time_s) == {*ATTACKS, "total"} and all(t >= 0 for t in result.time_s.values())
    assert result.attacks["pgd7"]["steps"] == 7 and result.attacks["pgd7"]["alpha"] == 0.01
    assert result.model["name"] == "lenet" and result.dataset == "fashion_mnist" and result.eps == EPS
    assert result.torch_version == torch.__version__ and result.device == "cpu" and result.date


def test_json_round_trip(result, tmp_path):
    path = result.save_json(tmp_path / "out" / "eval.json")
    assert [p.name for p in path.parent.iterdir()] == ["eval.json"], "temporary file left behind"
    raw = json.loads(path.read_text())
    assert raw["schema"] == "spikeshield.eval/1" and "per_sample" not in raw
    assert isinstance(raw["clean_acc"], float) and isinstance(raw["robust_acc"]["fgsm"], float)
    assert isinstance(raw["n_examples"], int)
    loaded = EvalResult.load_json(path)
    assert loaded.to_dict() == result.to_dict()
    full = EvalResult.load_json(result.save_json(tmp_path / "full.json", per_sample=True))
    assert full.per_sample == result.per_sample
    with pytest.raises(ValueError, match="unknown field"):
        EvalResult.from_dict({**raw, "bogus": 1})


def test_tensor_and_batch_iterable_inputs_agree(trained_lenet, data, result):
    x, y = data
    loader = [(x[i:i + 5], y[i:i + 5]) for i in range(0, len(y), 5)]
    other = evaluate(trained_lenet, loader, attacks=ATTACKS, eps=EPS, batch_size=BATCH, seed=0, progress=False)
    assert other.per_sample == result.per_sample
    assert other.robust_acc == result.robust_acc and other.number_forward_passes == result.number_forward_passes


def test_seed_makes_runs_reproducible_and_n_examples_limits(trained_lenet, data):
    runs = [evaluate(trained_lenet, *data, attacks="rfgsm", batch_size=5, seed=3, progress=False, n_examples=6)
            for _ in range(2)]
    assert runs[0].per_sample == runs[1].per_sample
    assert runs[0].n_examples == 6


def test_attack_instances_and_clean_only(trained_lenet, data):
    x, y = data
    attacks = [FGSM(trained_lenet, EPS), PGD(trained_lenet, EPS, steps=1)]
    res = evaluate(trained_lenet, x, y, attacks=attacks, progress=False)
    assert list(res.robust_acc) == ["fgsm", "pgd"]
    clean_only = evaluate(trained_lenet, x, y, attacks=[], progress=False)
    assert clean_only.mra is None and clean_only.worst_case_acc == clean_only.clean_acc
    markdown_table(clean_only)


def test_warnings_for_train_mode_and_stochastic_models_without_eot():
    x = torch.rand(4, 1, 4, 4)
    y = torch.tensor([0, 1, 2, 0])
    model = TinyNet(1, 4, 3, noise=0.1).train()
    with pytest.warns(UserWarning, match="train mode"):
        auto = evaluate(model, x, y, attacks="fgsm", progress=False)
    assert auto.attacks["fgsm"]["eot"] == DEFAULT_EOT
    model.eval()
    with pytest.warns(UserWarning, match="EOT|Expectation over Transformation"):
        evaluate(model, x, y, attacks="fgsm", eot=1, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluate(model, x, y, attacks="fgsm", eot=2, progress=False)


def test_evaluate_errors(trained_lenet, data):
    x, y = data
    with pytest.raises(ValueError, match="labels y are required"):
        evaluate(trained_lenet, x, attacks="fgsm", progress=False)
    with pytest.raises(ValueError, match="eps"):
        evaluate(trained_lenet, x, y, attacks=[FGSM(trained_lenet, 4 / 255)], eps=EPS, progress=False)
    with pytest.raises(ValueError, match="eps"):
        evaluate(trained_lenet, x, y, eps=1.5, progress=False)
    with pytest.raises(ValueError, match="unknown attack"):
        evaluate(trained_lenet, x, y, attacks="fgsm,pgd9", progress=False)
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        evaluate(trained_lenet, x, y + 10, attacks=[], progress=False)
    with pytest.raises(ValueError, match="empty"):
        evaluate(trained_lenet, [], attacks="fgsm", progress=False)


def test_tables_and_report(result, tmp_path, capsys):
    table = markdown_table(result)
    assert "| Clean | FGSM | RFGSM | PGD7 | Worst case | MRA |" in table
    assert f"{100 * result.clean_acc:.2f}" in table and "8/255" in table
    assert markdown_table([result, result]).count("lenet") == 2
    print_table(result)
    printed = capsys.readouterr().out
    assert "Worst case" in printed and f"{100 * result.mra:.2f}" in printed
    path = write_report(result, tmp_path / "report.md", command="spikeshield eval --checkpoint run --attacks fgsm")
    text = path.read_text()
    assert "spikeshield eval --checkpoint run" in text and "## Results" in text and "pgd7" in text


def test_reports_mark_cascade_columns_cumulative_and_list_skipped_members(result, tmp_path):
    cascade = dataclasses.replace(result, cascade=True,
                                  suites={"snn-adaptive": {"skipped": {"apgd-ce@ann": "not a create_model model"}}})
    assert "| FGSM (cumulative) | RFGSM (cumulative) |" in markdown_table(cascade)
    assert "(cumulative)" not in markdown_table(result)
    text = write_report(cascade, tmp_path / "cascade.md").read_text()
    assert "cumulative" in text and "apgd-ce@ann: not a create_model model" in text
    assert "## Decision rule and expected accuracy" in text and "worst_case" in text
