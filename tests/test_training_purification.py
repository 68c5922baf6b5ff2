"""OLS and purifier training through the one trainer (issue 19, item 4), on real FashionMNIST, kept tiny."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spikeshield import checkpoint
from spikeshield.cli import main
from spikeshield.config import parse_config
from spikeshield.models import Pipeline
from spikeshield.training import train
from spikeshield.training.objectives import OnlineLabelSmoothing, get_objective


def config(out_dir, **sections):
    """LeNet MLF T=2, 192 training images, 2 epochs (seconds)."""
    data = {
        "out_dir": str(out_dir), "seed": 3, "device": "cpu",
        "model": {"name": "lenet", "T": 2, "synapse": None, "neuron": "mlf"},
        "data": {"batch_size": 64, "train_subset": 192, "eval_subset": 64},
        "optim": {"name": "adam", "lr": 2e-3, "epochs": 2, "grad_clip": 5.0},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_config(data)


def test_ols_starts_uniform_and_learns_the_mean_softmax_of_correct_samples():
    ols = get_objective("ols", alpha=0.5)
    assert isinstance(ols, OnlineLabelSmoothing)
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    y = torch.tensor([0, 1, 0, 1])  # the last sample is wrong and must not count
    ols.start_epoch(0)
    loss, out = ols(lambda x: x, logits, y)
    uniform = -(F.log_softmax(logits, 1)).mean(1).mean()
    assert loss.item() == pytest.approx(0.5 * F.cross_entropy(logits, y).item() + 0.5 * uniform.item())
    ols.end_epoch()
    p = F.softmax(logits, 1)
    torch.testing.assert_close(ols.targets[0], (p[0] + p[2]) / 2)
    torch.testing.assert_close(ols.targets[1], p[1])
    torch.testing.assert_close(ols.targets[2], torch.full((3,), 1 / 3))  # no correct sample: unchanged
    restored = OnlineLabelSmoothing()
    restored.load_state_dict(ols.state_dict())
    torch.testing.assert_close(restored.targets, ols.targets)
    with pytest.raises(ValueError, match="objective 'ols'"):
        get_objective("ols", beta=1)


def test_ols_training_resumes_with_its_soft_targets(tmp_path):
    cfg = config(tmp_path / "full", objective="ols")
    full = train(cfg, progress=False)
    cut = cfg.model_copy(update={"out_dir": str(tmp_path / "cut")})
    train(cut, progress=False, stop_after_epochs=1)
    resumed = train(cut, resume=True, progress=False)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), "the resumed OLS run lost its soft targets"


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    return train(config(tmp_path_factory.mktemp("cls") / "run"), progress=False).checkpoint


def test_purifier_trains_in_front_of_a_frozen_classifier_and_saves_the_pipeline(classifier, tmp_path, monkeypatch):
    from spikeshield.training import trainer as trainer_module

    targets = []
    real = trainer_module.make_training_attack
    monkeypatch.setattr(trainer_module, "make_training_attack",
                        lambda model, cfg: targets.append(model) or real(model, cfg))
    cfg = config(tmp_path / "pur", objective="denoise", objective_params={"charbonnier_epochs": 1},
                 model={"name": "purifier", "T": 2, "neuron": "lif", "model_params": {"width": 0.125}},
                 purify={"classifier": str(classifier)}, adversarial={"attack": "fgsm", "eps": "16/255"})
    result = train(cfg, progress=False)
    assert len(targets) == 1 and not isinstance(targets[0], Pipeline)  # examples of the classifier alone
    pipeline = checkpoint.load(result.checkpoint)
    assert isinstance(pipeline, Pipeline) and list(pipeline.stages) == ["purifier", "classifier"]
    original = checkpoint.load(classifier)
    kept = pipeline.stage("classifier").state_dict()
    assert all(torch.equal(v, kept[k]) for k, v in original.state_dict().items()), "the classifier changed"
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert main(["eval", "--checkpoint", str(result.checkpoint), "--attacks", "fgsm,pgd7", "--n-examples", "8",
                 "--out", str(tmp_path / "eval"), "--no-progress"]) == 0
    assert (tmp_path / "eval" / "eval.json").is_file()
    # the trained purifier moved in front of another classifier, saved as one pipeline from the CLI
    assert main(["compose", "--stage", f"purifier={result.checkpoint}@purifier", "--stage",
                 f"classifier={classifier}", "--out", str(tmp_path / "moved")]) == 0
    moved = checkpoint.load(tmp_path / "moved")
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(moved(x), original(pipeline.stage("purifier")(x)))
    assert main(["compose", "--stage", f"purifier={classifier}@purifier", "--stage", f"classifier={classifier}",
                 "--out", str(tmp_path / "bad")]) == 2


@pytest.mark.parametrize("change, words", [
    ({"objective": "denoise"}, "purifier training needs"),
    ({"purify": {"classifier": "x"}}, "purifier training needs"),
    ({"model": {"name": "purifier", "T": 2, "neuron": "lif"}}, "purifier training needs"),
])
def test_purifier_training_needs_all_its_parts(tmp_path, change, words):
    with pytest.raises(ValueError, match=words):
        config(tmp_path, **change)


def test_ols_is_not_combined_with_distillation(tmp_path):
    with pytest.raises(ValueError, match="ols"):
        config(tmp_path, objective="ols", distill={"teacher": "runs/x"})
