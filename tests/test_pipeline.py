"""Composed models (issue 19, item 3): a Pipeline is one model for checkpoints, attacks, evaluation and audits, and
the attacker picks each stage's backward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spikeshield import checkpoint
from spikeshield.attacks import PGD
from spikeshield.defenses.purification import purifier
from spikeshield.evaluation import evaluate
from spikeshield.models import Pipeline, ann_twin, build_model, create_model
from spikeshield.neurons import gradient_mode


@pytest.fixture(scope="module")
def parts():
    torch.manual_seed(0)
    return purifier(T=2, width=0.125).eval(), create_model("lenet", T=3, neuron="mlf").eval()


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(1)
    return torch.rand(4, 1, 28, 28, generator=g), torch.tensor([0, 3, 5, 7])


def input_grad(model, x, y):
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(xr), y), xr)
    return g


def test_pipeline_is_its_stages_in_order(parts, batch):
    p, c = parts
    x, _ = batch
    pipe = Pipeline([("purifier", p), ("classifier", c)])
    assert torch.equal(pipe(x), c(p(x)))
    assert pipe.forward_steps(x).shape == (3, 4, 10)
    assert pipe.info is c.info and pipe.num_classes == 10 and not pipe.is_stochastic
    assert torch.equal(pipe.upto("purifier", x), p(x))
    rsc = create_model("lenet", T=2, encoder="rsc1-0.1")
    assert Pipeline([("purifier", p), ("classifier", rsc)]).is_stochastic


def test_pipeline_checkpoints_and_loads_as_one_directory(parts, batch, tmp_path):
    p, c = parts
    x, _ = batch
    pipe = Pipeline([("purifier", p), ("classifier", c)], frozen=["classifier"])
    checkpoint.save(pipe, tmp_path / "pipe")
    loaded = checkpoint.load(tmp_path / "pipe")
    assert isinstance(loaded, Pipeline) and loaded.frozen == ("classifier",)
    assert torch.equal(loaded(x), pipe(x))
    assert not any(q.requires_grad for q in loaded.stage("classifier").parameters())
    rebuilt = build_model(pipe.config)
    rebuilt.load_state_dict(pipe.state_dict())
    assert torch.equal(rebuilt.eval()(x), pipe(x))


def test_frozen_stages_stay_in_eval_mode_and_get_no_gradient(parts):
    p, c = parts
    pipe = Pipeline([("purifier", purifier(T=2, width=0.125)), ("classifier", create_model("lenet", T=2))],
                    frozen=["classifier"]).train()
    assert pipe.stage("purifier").training and not pipe.stage("classifier").training
    assert all(not q.requires_grad for q in pipe.stage("classifier").parameters())


def test_attack_gradient_mode_reaches_every_stage(parts, batch):
    p, c = parts
    x, y = batch
    pipe = Pipeline([("purifier", p), ("classifier", c)])
    attack = PGD(pipe, eps=8 / 255, grad="rga")
    with attack.gradient_context():
        via_attack = input_grad(pipe, x, y)
    with gradient_mode("rga"):
        manual = input_grad(lambda z: c(p(z)), x, y)
    torch.testing.assert_close(via_attack, manual)
    assert not torch.allclose(via_attack, input_grad(pipe, x, y))


@pytest.mark.parametrize("stage", ["purifier", "classifier"])
def test_a_gradient_mode_on_one_stage_changes_only_that_stage(parts, batch, stage):
    p, c = parts
    x, y = batch
    pipe = Pipeline([("purifier", p), ("classifier", c)])
    view = pipe.with_gradient(stage, "triangle")
    assert torch.equal(view(x), pipe(x))
    assert view.config["gradients"] == {stage: {"name": "triangle", "gamma": 1.0}}

    def staged(z):
        if stage == "purifier":
            with gradient_mode("triangle"):
                z = p(z)
            return c(z)
        z = p(z)
        with gradient_mode("triangle"):
            return c(z)

    torch.testing.assert_close(input_grad(view, x, y), input_grad(staged, x, y))
    assert "gradients" not in pipe.config  # the view leaves the pipeline as it was


def test_bpda_replaces_a_stage_backward_by_the_identity(parts, batch):
    p, c = parts
    x, y = batch
    view = Pipeline([("purifier", p), ("classifier", c)]).with_gradient("purifier", "bpda")
    assert torch.equal(view(x), c(p(x)))
    torch.testing.assert_close(input_grad(view, x, y), input_grad(c, p(x), y))  # d classifier / d its input
    with pytest.raises(ValueError, match="image-to-image"):
        view.with_gradient("classifier", "bpda")
    with pytest.raises(ValueError, match="no stage 'denoiser'"):
        view.with_gradient("denoiser", "rga")


def test_ann_twin_of_a_pipeline_and_of_one_stage(parts, batch):
    p, c = parts
    x, y = batch
    pipe = Pipeline([("purifier", p), ("classifier", c)])
    twin = ann_twin(pipe)
    assert isinstance(twin, Pipeline) and twin(x).shape == (4, 10)
    attack = PGD(pipe, eps=8 / 255, alpha=2 / 255, steps=2, grad="ann")
    assert attack(x, y).shape == x.shape
    view = pipe.with_gradient("purifier", "ann")
    assert torch.equal(view(x), pipe(x))
    stage_twin = ann_twin(p)
    torch.testing.assert_close(input_grad(view, x, y),
                               input_grad(lambda z: c(p(z).detach() + stage_twin(z) - stage_twin(z).detach()), x, y))


def test_pipeline_evaluates_as_one_model(parts, batch):
    p, c = parts
    x, y = batch
    pipe = Pipeline([("purifier", p), ("classifier", c)])
    result = evaluate(pipe, x, y, attacks=["fgsm", "pgd7"], eps=8 / 255, progress=False)
    assert result.model["name"] == "pipeline" and result.n_examples == 4
    assert result.worst_case_acc <= result.clean_acc


def test_bad_pipelines_are_refused(parts):
    p, c = parts
    with pytest.raises(ValueError, match="at least one"):
        Pipeline([])
    with pytest.raises(TypeError, match="classifier"):
        Pipeline([("classifier", c), ("purifier", p)])
    with pytest.raises(ValueError, match="unique"):
        Pipeline([("a", p), ("a", c)])
    with pytest.raises(ValueError, match="stages"):
        build_model({"name": "pipeline"})


def test_pipeline_audits_and_transfers_as_one_model(parts, batch):
    from spikeshield.attacks import Transfer
    from spikeshield.evaluation import audit

    p, c = parts
    x, y = batch
    pipe = Pipeline([("purifier", p), ("classifier", c)])
    report = audit(pipe, x, y, 8 / 255, attacks="pgd7", blackbox="gaussian", n_random=4, unbounded_steps=5,
                   progress=False, gradients=["rga"])
    assert report.n_examples == 4 and report.model["name"] == "pipeline"
    source = create_model("lenet", T=2, synapse=None).eval()
    x_adv = Transfer(pipe, 8 / 255, source=source, attack="fgsm")(x, y)
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6
