"""The trainer on real FashionMNIST, kept tiny (T=2, a few hundred images): runs, logs, checkpoints, resumes."""

import json

import pytest
import torch

from spikeshield import checkpoint
from spikeshield.config import parse_config
from spikeshield.training import train
from spikeshield.training import trainer as trainer_module
from spikeshield.training.state import join_tensors, split_tensors


def tiny(out_dir, **sections):
    """A config that trains in seconds: LeNet T=2 without PSC filter, 192 training images, 2 epochs."""
    data = {
        "out_dir": str(out_dir),
        "seed": 1,
        "model": {"name": "lenet", "T": 2, "synapse": None},
        "data": {"batch_size": 64, "train_subset": 192, "eval_subset": 128},
        "optim": {"name": "adam", "lr": 2e-3, "epochs": 2, "grad_clip": 5.0},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_config(data)


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """An uninterrupted adversarial (RFGSM: random start) run, the reference for the resume test."""
    cfg = tiny(tmp_path_factory.mktemp("full") / "run", adversarial={"attack": "rfgsm", "eps": "4/255"})
    return train(cfg, progress=False)


def test_run_writes_metrics_and_checkpoints(full_run):
    out = full_run.out_dir
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2] and lines == full_run.history
    for key in ("train_loss", "train_acc", "test_acc", "lr", "epoch_time_s", "images_per_s"):
        assert key in lines[-1]
    assert lines[1]["lr"] < lines[0]["lr"]  # cosine schedule
    assert (out / "config.yaml").is_file() and (out / "train_state" / "state.json").is_file()
    model = checkpoint.load(full_run.checkpoint)
    assert _same_weights(model, full_run.model)
    meta = checkpoint.read_config(full_run.checkpoint)["metadata"]
    assert meta["epoch"] == 2 and meta["train_config"]["adversarial"]["attack"] == "rfgsm"
    assert not full_run.model.training


def test_resume_is_bit_identical(full_run, tmp_path):
    cfg = full_run.config.model_copy(update={"out_dir": str(tmp_path / "run")})
    first = train(cfg, progress=False, stop_after_epochs=1)
    assert not first.completed and len(first.history) == 1
    with pytest.raises(FileExistsError, match="resume"):
        train(cfg, progress=False)
    changed = parse_config({**cfg.model_dump(mode="json"), "seed": 2})
    with pytest.raises(ValueError, match="seed: 1 -> 2"):
        train(changed, resume=True, progress=False)
    resumed = train(cfg, resume=True, progress=False)
    assert resumed.completed
    assert _same_weights(resumed.model, full_run.model), "resumed run differs from the uninterrupted one"
    drop = {"epoch_time_s", "eval_time_s", "images_per_s"}
    strip = [{k: v for k, v in m.items() if k not in drop} for m in resumed.history]
    assert strip == [{k: v for k, v in m.items() if k not in drop} for m in full_run.history]
    again = train(cfg, resume=True, progress=False)  # nothing left to do
    assert _same_weights(again.model, full_run.model)


def test_resume_without_state(tmp_path):
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        train(tiny(tmp_path / "none"), resume=True, progress=False)


def test_clean_training_reduces_loss_and_fgsm_crafts_in_eval_mode(tmp_path, monkeypatch):
    modes = []
    real = trainer_module.make_training_attack

    def spy(model, cfg):
        attack = real(model, cfg)
        if attack is None:
            return None

        def craft(x, y):
            modes.append(model.training)
            x_adv = attack(x, y)
            assert (x_adv - x).abs().max() <= cfg.adversarial.eps + 1e-6
            return x_adv

        return craft

    monkeypatch.setattr(trainer_module, "make_training_attack", spy)
    cfg = tiny(tmp_path / "fgsm", adversarial={"attack": "fgsm", "eps": "2/255"}, optim={"epochs": 1})
    result = train(cfg, progress=False)
    assert modes == [False] * 3 and result.completed

    clean = tiny(tmp_path / "clean", data={"train_subset": 256}, optim={"epochs": 3, "lr": 3e-3})
    history = train(clean, progress=False).history
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 0.1, history


def test_state_split_is_exact():
    model = torch.nn.Linear(3, 2)
    for opt in (torch.optim.Adam(model.parameters()), torch.optim.SGD(model.parameters(), 0.1, momentum=0.9)):
        model(torch.rand(4, 3)).sum().backward()
        opt.step()
        state = opt.state_dict()
        tree, tensors = split_tensors(state, "optimizer")
        back = join_tensors(json.loads(json.dumps(tree)), tensors)
        assert back["param_groups"] == state["param_groups"]
        assert back["state"].keys() == state["state"].keys()
        for k, entry in state["state"].items():
            assert all(torch.equal(entry[n], back["state"][k][n]) for n in entry)


def test_plot_history_writes_png(tmp_path):
    from spikeshield.report import plot_history

    history = [{"epoch": e, "train_loss": 2.0 / e, "train_acc": 0.3 * e, "test_acc": 0.25 * e} for e in (1, 2, 3)]
    path = plot_history(history, tmp_path / "curves.png", title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_rat_retracts_the_weights_after_every_optimiser_step(tmp_path, monkeypatch):
    calls = []
    real = trainer_module.orthogonal_retraction
    monkeypatch.setattr(trainer_module, "orthogonal_retraction",
                        lambda m, beta, rng: (calls.append(beta), real(m, beta, rng)))
    cfg = tiny(tmp_path / "rat", optim={"epochs": 1, "rat_beta": 0.004},
               model={"neuron": "randhet"}, adversarial={"attack": "fgsm", "eps": 4 / 255})
    result = train(cfg, progress=False)
    assert calls == [0.004] * 3  # 192 images / batch 64
    assert result.model.is_stochastic and result.config.optim.rat_beta == 0.004


def test_checkpoint_selection_scores_held_out_training_images_never_the_test_set(tmp_path, monkeypatch):
    """``select.holdout`` sets training images aside (not trained on), scores the last epochs on them, and keeps the
    best epoch in ``selected/``; the test set is never read for it."""
    seen_sizes, trained = [], []
    score = trainer_module.holdout_accuracy
    monkeypatch.setattr(trainer_module, "holdout_accuracy",
                        lambda model, data, *rest: seen_sizes.append(len(data)) or score(model, data, *rest))
    batches = trainer_module.epoch_batches
    monkeypatch.setattr(trainer_module, "epoch_batches",
                        lambda data, cfg, epoch, *rest: trained.append(len(data)) or batches(data, cfg, epoch, *rest))
    cfg = tiny(tmp_path / "run", select={"holdout": 64, "attack": "fgsm", "eps": "2/255", "last_epochs": 2},
               optim={"epochs": 3})
    result = train(cfg, progress=False)
    assert trained == [128, 128, 128] and seen_sizes == [64, 64]  # 192 - 64 trained on; epochs 2 and 3 scored
    assert "holdout_acc" not in result.history[0]
    scores = [m["holdout_acc"] for m in result.history[1:]]
    best = 2 + scores.index(max(scores))
    assert result.selected_epoch == best and result.checkpoint == result.out_dir / "selected"
    assert checkpoint.read_config(result.checkpoint)["metadata"]["epoch"] == best
    train_images = trainer_module.split_holdout(
        trainer_module.random_subset(trainer_module.load_dataset("fashion_mnist", "train"), 192, 1, 10), 64, 1)
    kept, held = (set(map(bytes, d.images.numpy())) for d in train_images)
    assert not kept & held, "held-out images must not be trained on"
    with pytest.raises(ValueError, match="select.holdout"):
        trainer_module.split_holdout(train_images[1], 64, 0)
    with pytest.raises(ValueError, match="attack"):
        tiny(tmp_path / "bad", select={"holdout": 8, "attack": "no-such-attack"})


def test_sr_objective_adds_the_finite_difference_penalty(tmp_path):
    """SR = CE + lam * mean(((f(x + h v) - f(x)) / h)^2); lam 0 is plain CE, the penalty is >= 0, h's units scale
    the step by the normalisation std; bad parameters are named."""
    from spikeshield.models import create_model
    from spikeshield.training.objectives import cross_entropy, get_objective

    torch.manual_seed(0)
    model = create_model("lenet", neuron="lif", T=2, synapse=None)
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    ce, _ = cross_entropy(model, x, y)
    assert torch.allclose(get_objective("sr", lam=0.0)(model, x, y)[0], ce)
    big = get_objective("sr", lam=1e3, h=0.5)(model, x, y)[0]
    assert big > ce, "a large lam makes the penalty visible"
    loss, _ = get_objective("sr", lam=1e3, h=0.5, h_units="pixel")(model, x, y)
    assert loss.requires_grad and not torch.allclose(loss, big)
    with pytest.raises(ValueError, match="bad parameters for objective 'sr'"):
        get_objective("sr", lamda=1.0)
    with pytest.raises(ValueError, match="objective"):
        tiny(tmp_path / "run", objective="sr", objective_params={"gamma": 1.0})
    cfg = tiny(tmp_path / "run", objective="sr", objective_params={"lam": 0.001}, optim={"epochs": 1})
    assert train(cfg, progress=False).final["train_loss"] > 0


# --------------------------------------------------------------------------------------- TET and E-RSCT distillation
class _Steps(torch.nn.Module):
    """A stand-in model with fixed per-step outputs ``[T, B, classes]``."""

    def __init__(self, steps: torch.Tensor) -> None:
        super().__init__()
        self.steps = torch.nn.Parameter(steps.clone())

    def forward_steps(self, x):
        return self.steps

    def forward(self, x):
        return self.steps.mean(0)


def test_tet_is_the_mean_per_step_cross_entropy_plus_an_mse_to_phi():
    from torch.nn import functional as F

    from spikeshield.training.objectives import get_objective

    steps = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3])
    loss, logits = get_objective("tet", mu=0.2, phi=1.0)(_Steps(steps), None, y)
    by_hand = 0.8 * sum(F.cross_entropy(steps[t], y) for t in range(3)) / 3 + 0.2 * ((steps - 1) ** 2).mean()
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-6)
    assert torch.allclose(logits, steps.mean(0))
    with pytest.raises(ValueError, match="mu"):
        get_objective("tet", mu=2.0)(_Steps(steps), None, y)


def test_distillation_adds_lambda_kl_from_a_frozen_teacher():
    from spikeshield.training.objectives import cross_entropy, distillation, with_distillation

    student = torch.randn(4, 5, generator=torch.Generator().manual_seed(1))
    assert distillation(student, student).item() == pytest.approx(0.0, abs=1e-6)
    teacher_logits = torch.randn(4, 5, generator=torch.Generator().manual_seed(2))
    kl = (torch.softmax(teacher_logits / 2, 1) * (torch.log_softmax(teacher_logits / 2, 1)
                                                  - torch.log_softmax(student / 2, 1))).sum(1).mean() * 4
    assert distillation(student, teacher_logits, 2.0).item() == pytest.approx(kl.item(), rel=1e-5)

    teacher = torch.nn.Linear(3, 5)
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 3])
    model = torch.nn.Linear(3, 5)
    loss, logits = with_distillation(cross_entropy, teacher, lam=0.1)(model, x, y)
    expected = torch.nn.functional.cross_entropy(model(x), y) + 0.1 * distillation(model(x), teacher(x))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert teacher.weight.grad is None and model.weight.grad is not None


def test_distillation_teacher_must_be_built_for_the_students_dataset(tmp_path):
    from spikeshield.models import create_model

    checkpoint.save(create_model("lenet", dataset="cifar10", ann=True), tmp_path / "teacher")
    cfg = parse_config({"out_dir": str(tmp_path / "run"), "device": "cpu", "model": {"name": "lenet", "T": 2},
                        "data": {"train_subset": 64, "eval_subset": 32}, "optim": {"epochs": 1},
                        "distill": {"teacher": str(tmp_path / "teacher")}})
    with pytest.raises(ValueError, match="cifar10 images; the student for fashion_mnist"):
        train(cfg, progress=False)


def test_bf16_mixed_precision_trains_with_neurons_in_float32(tmp_path, monkeypatch):
    """optim.amp: bf16 runs the step under autocast: the convolutions see bfloat16, the neurons float32 currents, the
    weights stay float32, and the model's logits under autocast stay near its float32 ones (bfloat16 rounds the
    convolutions, which flips a few spikes; the trained accuracy effect is benchmarks/amp_accuracy.py's)."""
    from spikeshield.neurons import LIF

    seen = []
    real = LIF.run
    monkeypatch.setattr(LIF, "run", lambda self, current, s: seen.append(current.dtype) or real(self, current, s))
    amp = train(tiny(tmp_path / "amp", optim={"amp": "bf16", "epochs": 1}), progress=False)
    assert torch.float32 in seen and torch.bfloat16 not in seen
    assert all(p.dtype == torch.float32 for p in amp.model.parameters()) and amp.history[-1]["train_loss"] < 10
    x = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = amp.model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = amp.model(x).float()
    assert (mixed - full).norm() / full.norm() < 0.1
