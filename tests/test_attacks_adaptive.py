"""The snn-adaptive suite: per-sample worst case over (attack x gradient) pairs, cheapest first, tuned off the test
set."""

from __future__ import annotations

import pytest
import torch
from conftest import TinyNet

from spikeshield.attacks import SNNAdaptive
from spikeshield.attacks.adaptive import PRESETS, TUNABLE
from spikeshield.attacks.registry import make_suite
from spikeshield.evaluation import evaluate

EPS = 8 / 255


def test_quick_preset_members_and_per_sample_record(trained_lenet, fmnist_batch):
    x, y = (t[:6] for t in fmnist_batch)
    suite = SNNAdaptive(trained_lenet, EPS, preset="quick")
    assert list(suite.members) == ["apgd-ce", "sapgd@assg-0.45"]
    assert suite.tuned["assg"] == {"A": 0.45, "tuned": False}
    for attack in suite.members.values():
        attack.steps = 3
    x_adv = suite(x, y)
    assert (x_adv - x).abs().max() <= EPS + 1e-6
    with torch.no_grad():
        fooled = trained_lenet(x_adv).argmax(1) != y
    # every point is attacked (wrong-clean ones too), and the strongest point found is returned, never x itself
    assert [b is not None for b in suite.last_broken_by] == fooled.tolist()
    assert (x_adv != x).flatten(1).any(1).all()
    assert set(suite.last_broken_by) <= {None, *suite.members}


def test_in_evaluate_the_worst_case_is_below_every_member(trained_lenet, fmnist_batch):
    x, y = (t[:8] for t in fmnist_batch)
    suite = SNNAdaptive(trained_lenet, EPS, members=["fgsm", "fgsm@rga", "pgd7@hart-0.5", "pgd7@pdsg"])
    result = evaluate(trained_lenet, x, y, attacks=suite, eps=EPS, progress=False)
    assert result.cascade and list(result.robust_acc) == list(suite.members)
    assert result.worst_case_acc == min(result.robust_acc.values())
    alone = {name: evaluate(trained_lenet, x, y, attacks=[attack], eps=EPS, progress=False).robust_acc[name]
             for name, attack in suite.members.items()}
    assert all(result.worst_case_acc <= acc for acc in alone.values())
    n = len(y)
    assert sum(result.broken_by.values()) == round(n * (result.clean_acc - result.worst_case_acc))
    assert result.suites["snn-adaptive"]["preset"] == "custom"


def test_tuning_picks_the_strongest_candidate_on_the_given_images(trained_lenet, fmnist_batch):
    x, y = (t[8:12].clone() for t in fmnist_batch)  # stand-ins for held-out training images
    with torch.no_grad():
        predicted = trained_lenet(x).argmax(1)
    y[0] = (predicted[0] + 1) % 10  # one image the model gets wrong: not attacked
    suite = SNNAdaptive(trained_lenet, EPS, members=["fgsm@hart"], tune_on=(x, y))
    record = suite.tuned["hart"]
    scores = {float(k): v for k, v in record["robust_acc"].items()}
    assert record["tuned"] and set(scores) == set(TUNABLE["hart"][1])
    assert scores[record["g"]] == min(scores.values())
    assert list(suite.members) == [f"fgsm@hart-{record['g']:g}"]
    correct = int((predicted == y).sum())
    assert record["n_images"] == 4 and record["n_attacked"] == correct  # a wrong image scores 0 under every candidate
    assert record["forward_passes"] == suite.forward_passes > 0  # the tuning's cost, counted
    again = SNNAdaptive(trained_lenet, EPS, members=["fgsm@hart"], tuned=suite.tuned_values(), tune_on=(x, y))
    assert list(again.members) == list(suite.members)  # tuned once, passed on: no second tuning run
    assert again.forward_passes == 0 and again.tuned["hart"]["tuned"] == "given"


def test_non_spiking_models_keep_only_their_own_gradient():
    suite = SNNAdaptive(TinyNet(), EPS, preset="standard")
    assert list(suite.members) == ["apgd-ce", "apgd-t"]
    assert len(suite.skipped) == len(PRESETS["standard"]) - 2


def test_bad_arguments():
    model = TinyNet()
    with pytest.raises(ValueError, match="choose one of"):
        SNNAdaptive(model, EPS, preset="fast")
    with pytest.raises(ValueError, match="do not pass grad"):
        SNNAdaptive(model, EPS, grad="rga")
    with pytest.raises(ValueError, match="no snn-adaptive member"):
        SNNAdaptive(model, EPS, members=["pgd7@rga"])
    assert isinstance(make_suite("SNN_adaptive-quick", model, EPS), SNNAdaptive)


def test_snn_adaptive_is_in_the_attack_registry(trained_lenet):
    from spikeshield.attacks import make_attack

    suite = make_attack("snn-adaptive-quick", trained_lenet, EPS)
    assert isinstance(suite, SNNAdaptive) and suite.preset == "quick"
