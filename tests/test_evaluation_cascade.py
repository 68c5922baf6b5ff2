"""The cascade (each attack only on still-robust points), the resumable state file and the AutoAttack suites."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from conftest import TinyNet

from spikeshield.attacks import PGD, AutoAttack
from spikeshield.attacks.ensemble import RAND_EOT
from spikeshield.attacks.registry import suite_version
from spikeshield.evaluation import evaluate

EPS = 8 / 255
BATCH = 24


def test_cascade_keeps_the_worst_case_and_costs_less(trained_lenet, fmnist_eval):
    x, y = fmnist_eval
    attacks = "fgsm,bim7"  # deterministic: both ways must find exactly the same per-sample worst case
    full = evaluate(trained_lenet, x, y, attacks=attacks, eps=EPS, batch_size=BATCH, progress=False)
    cascade = evaluate(trained_lenet, x, y, attacks=attacks, eps=EPS, batch_size=BATCH, progress=False,
                       cascade=True)
    assert cascade.cascade and not full.cascade
    assert cascade.worst_case_acc == full.worst_case_acc == cascade.mra
    assert cascade.robust_acc["fgsm"] == full.robust_acc["fgsm"]
    assert cascade.robust_acc["bim7"] == cascade.worst_case_acc <= cascade.robust_acc["fgsm"]
    clean_correct = sum(full.per_sample["clean"])
    robust_after_fgsm = sum(full.per_sample["fgsm"][i] for i in range(len(y)) if full.per_sample["clean"][i])
    # BIM's 7 gradient passes + the last iterate's loss (best iterate) + 1 scoring pass per attacked image
    assert full.number_forward_passes["bim7"] == 9 * len(y)
    assert cascade.number_forward_passes["bim7"] == 9 * robust_after_fgsm
    assert cascade.number_forward_passes["fgsm"] == 2 * clean_correct
    assert cascade.number_forward_passes["total"] < full.number_forward_passes["total"]


class Interrupt(Exception):
    """Raised to simulate a run killed in the middle."""


def test_state_file_resumes_to_the_uninterrupted_result(trained_lenet, fmnist_eval, tmp_path):
    x, y = fmnist_eval
    kwargs = dict(eps=EPS, batch_size=BATCH, progress=False, seed=3)

    def pgd(fail_at: int = 0):  # random starts: the resumed run must restore the RNG to match
        attack = PGD(trained_lenet, EPS, alpha=0.01, steps=3, random_start=True)
        attack.name, perturb, calls = "pgd3", attack.perturb, []

        def flaky(xb, yb):
            calls.append(1)
            if len(calls) == fail_at:
                raise Interrupt
            return perturb(xb, yb)

        attack.perturb = flaky
        return attack

    reference = evaluate(trained_lenet, x, y, attacks=[pgd()], **kwargs)
    state = tmp_path / "state.json"
    with pytest.raises(Interrupt):
        evaluate(trained_lenet, x, y, attacks=[pgd(fail_at=2)], state_file=state, **kwargs)
    saved = json.loads(state.read_text())
    assert saved["batches_done"] == 1 and len(saved["flags"]["pgd3"]) == BATCH
    resumed = evaluate(trained_lenet, x, y, attacks=[pgd()], state_file=state, **kwargs)
    assert resumed.per_sample == reference.per_sample
    assert resumed.robust_acc == reference.robust_acc
    assert resumed.number_forward_passes == reference.number_forward_passes
    assert json.loads(state.read_text())["batches_done"] == 3

    with pytest.raises(ValueError, match="different evaluation"):
        evaluate(trained_lenet, x, y, attacks=[pgd()], state_file=state, **{**kwargs, "seed": 4})
    retrained = copy.deepcopy(trained_lenet)  # same config, other weights: a retrained checkpoint
    with torch.no_grad():
        next(retrained.parameters()).add_(1e-3)
    with pytest.raises(ValueError, match="different evaluation.*weights"):
        evaluate(retrained, x, y, attacks=[pgd()], state_file=state, **kwargs)
    state.write_text("{not json")
    with pytest.raises(ValueError, match="not a spikeshield evaluation state"):
        evaluate(trained_lenet, x, y, attacks=[pgd()], state_file=state, **kwargs)


def test_suite_names_and_rand_version_for_stochastic_models():
    assert suite_version("AutoAttack") == "auto" and suite_version("autoattack_rand") == "rand"
    assert suite_version("pgd7") is None
    noisy = TinyNet(1, 4, 3, noise=0.1).eval()
    aa = AutoAttack(noisy, EPS)
    assert aa.version == "rand" and list(aa.members) == ["apgd-ce", "apgd-dlr"]
    assert {m.eot for m in aa.members.values()} == {RAND_EOT}
    assert aa.settings()["members"]["apgd-dlr"]["loss"] == "dlr"
    with pytest.raises(ValueError, match="version"):
        AutoAttack(noisy, EPS, version="plus")
    with pytest.raises(ValueError, match="untargeted"):
        AutoAttack(noisy, EPS, targeted=True)
    with pytest.warns(UserWarning, match="stochastic"):
        AutoAttack(noisy, EPS, version="standard")


def test_rand_suite_runs_as_a_cascade_and_as_one_attack():
    torch.manual_seed(0)
    model = TinyNet(1, 4, 3, noise=0.05).eval()
    x, y = torch.rand(12, 1, 4, 4), torch.arange(12) % 3
    aa = AutoAttack(model, 0.3, eot=2)
    for member in aa.members.values():
        member.steps = 5
    result = evaluate(model, x, y, attacks=[aa], eps=0.3, progress=False)
    assert result.cascade and list(result.robust_acc) == ["apgd-ce", "apgd-dlr"]
    assert result.robust_acc["apgd-dlr"] <= result.robust_acc["apgd-ce"] <= result.clean_acc
    x_adv = aa(x, y)
    assert (x_adv - x).abs().max() <= 0.3 + 1e-6
    assert aa.forward_passes > 0


def test_autoattack_by_name_keeps_its_own_eot_on_a_stochastic_model():
    model = TinyNet(1, 4, 3, noise=0.05).eval()
    x, y = torch.rand(3, 1, 4, 4), torch.arange(3)
    result = evaluate(model, x, y, attacks="autoattack,fgsm", eps=0.1, progress=False)
    assert result.attacks["apgd-ce"]["eot"] == result.attacks["apgd-dlr"]["eot"] == RAND_EOT
    assert result.attacks["fgsm"]["eot"] == 10  # registry attacks: DEFAULT_EOT
    assert result.cascade
