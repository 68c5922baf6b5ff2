"""AGCS and perturbation cosines (METHODS 2), layer-wise relative errors (METHODS 1) and their plots."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import TinyNet

from spikeshield.attacks import make_attack
from spikeshield.evaluation import AGCSResult, agcs, layer_errors, perturbation_cosine
from spikeshield.neurons.recording import record
from spikeshield.report import plot_agcs_histogram, plot_layer_errors


def _tiny_data(n: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    """Random 1x4x4 images in [0, 1] and labels of 3 classes."""
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, 4, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _psc_names(model: torch.nn.Module, x: torch.Tensor) -> list[str]:
    with record(model) as rec, torch.no_grad():
        model(x)
    return list(rec.psc)


# ----------------------------------------------------------------------------------------------------------- AGCS
def test_agcs_of_a_deterministic_model_is_one():
    model = TinyNet().eval()
    x, y = _tiny_data()
    res = agcs(model, x, y, batch_size=20)             # several batches, the last one short
    assert isinstance(res, AGCSResult)
    assert res.n == 48 and res.n_undefined == 0 and res.cosines.shape == (48,)
    assert abs(res.mean - 1.0) < 1e-6
    assert torch.allclose(res.cosines, torch.ones(48, dtype=torch.float64), atol=1e-6)


def test_agcs_of_a_trained_snn_is_one_and_leaves_the_model_alone(trained_lenet, fmnist_eval):
    x, y = fmnist_eval
    before = _state(trained_lenet)
    res = agcs(trained_lenet, x[:16], y[:16])
    assert not trained_lenet.training
    assert all(torch.equal(v, trained_lenet.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is None for p in trained_lenet.parameters())
    assert res.n > 0 and abs(res.mean - 1.0) < 1e-6


def test_agcs_of_a_stochastic_model_is_below_one():
    model = TinyNet(noise=0.5).eval()
    x, y = _tiny_data()
    res = agcs(model, x, y)
    assert res.n == 48
    assert res.mean < 0.999
    assert ((res.cosines >= -1) & (res.cosines <= 1)).all()
    assert -1 <= res.mean <= 1
    d = res.to_dict()
    assert d["n"] == 48 and len(d["cosines"]) == 48


def test_agcs_marks_zero_gradients_undefined():
    model = TinyNet().eval()
    with torch.no_grad():
        model.fc.weight.zero_()                        # constant logits: zero input gradient
    x, y = _tiny_data(8)
    res = agcs(model, x, y)
    assert res.n == 0 and res.n_undefined == 8 and math.isnan(res.mean)


def test_agcs_rejects_bad_inputs():
    model = TinyNet()
    x, y = _tiny_data(4)
    with pytest.raises(ValueError):
        agcs(model, x, y[:3])
    with pytest.raises(ValueError):
        agcs(model, x, y, batch_size=0)


# ------------------------------------------------------------------------------------------ perturbation cosine
def test_perturbation_cosine_of_fgsm_is_one(trained_lenet, fmnist_eval):
    x, y = fmnist_eval
    res = perturbation_cosine(trained_lenet, x[:16], y[:16], attack="fgsm", eps=8 / 255)
    assert res.n > 0 and abs(res.mean - 1.0) < 1e-6


def test_perturbation_cosine_of_random_start_pgd_is_below_one():
    model = TinyNet(noise=0.5).eval()
    x, y = _tiny_data()
    atk = make_attack("pgd7", model, eps=8 / 255, eot=1)
    res = perturbation_cosine(model, x, y, attack=atk)
    assert res.n > 0 and res.mean < 0.999
    assert ((res.cosines[~res.cosines.isnan()].abs()) <= 1).all()


# ------------------------------------------------------------------------------------------------ layer errors
@pytest.fixture(scope="module")
def lenet_errors(trained_lenet, fmnist_eval):
    """PSC layer errors of the trained LeNet between 32 real images and their PGD-7 examples."""
    x, y = fmnist_eval
    x, y = x[:32], y[:32]
    x_adv = make_attack("pgd7", trained_lenet, eps=8 / 255)(x, y)
    return x, x_adv, layer_errors(trained_lenet, x, x_adv, trace="psc", batch_size=20)


def test_layer_errors_cover_the_psc_layers(trained_lenet, lenet_errors):
    x, x_adv, errs = lenet_errors
    assert list(errs) == _psc_names(trained_lenet, x[:2])
    assert "body.0" in errs and "body.2.synapse" in errs
    for name, e in errs.items():
        assert e.dim() == 1 and e.numel() > 0 and (e >= 0).all(), name
    assert errs["body.6.synapse"].numel() == 32 * 1024
    assert errs["body.2.synapse"].numel() == 32 * 32 * 28 * 28
    assert errs["body.0"].max() > 0                   # PGD changed the input


def test_layer_errors_match_the_definition(trained_lenet, lenet_errors):
    x, x_adv, errs = lenet_errors
    with record(trained_lenet) as clean, torch.no_grad():
        trained_lenet(x)
    with record(trained_lenet) as adv, torch.no_grad():
        trained_lenet(x_adv)
    a, a2 = clean.psc["body.4.synapse"], adv.psc["body.4.synapse"]
    expected = (a2 - a).abs().sum(0) / (a.abs().sum(0) + 1e-12)
    assert torch.allclose(errs["body.4.synapse"], expected.flatten())


def test_layer_errors_are_zero_without_perturbation(trained_lenet, fmnist_eval):
    x, _ = fmnist_eval
    for trace in ("psc", "membrane"):
        errs = layer_errors(trained_lenet, x[:8], x[:8].clone(), trace=trace)
        assert errs and all(torch.equal(e, torch.zeros_like(e)) for e in errs.values())
    assert list(layer_errors(trained_lenet, x[:2], x[:2], trace="membrane")) == ["body.2", "body.4", "body.6"]


def test_layer_errors_reject_bad_arguments(trained_lenet, fmnist_eval):
    x, _ = fmnist_eval
    with pytest.raises(ValueError):
        layer_errors(trained_lenet, x[:2], x[:2], trace="current")
    with pytest.raises(ValueError):
        layer_errors(trained_lenet, x[:2], x[:3])
    with pytest.raises(ValueError, match="no 'psc' traces"):
        layer_errors(TinyNet(size=28), x[:2], x[:2])


# ------------------------------------------------------------------------------------------------------- plots
def _is_png(path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_plot_agcs_histogram(tmp_path):
    x, y = _tiny_data()
    det, sto = agcs(TinyNet(), x, y), agcs(TinyNet(noise=0.5), x, y)
    assert _is_png(plot_agcs_histogram(sto, tmp_path / "one.png"))
    assert _is_png(plot_agcs_histogram({"LIF": det, "noisy": sto}, tmp_path / "sub" / "two.png"))


def test_plot_layer_errors(tmp_path, lenet_errors):
    _, _, errs = lenet_errors
    halved = {k: v / 2 for k, v in errs.items()}
    path = plot_layer_errors({"LeNet": errs, "half": halved}, tmp_path / "errors.png")
    assert _is_png(path)
    assert _is_png(plot_layer_errors({"LeNet": errs}, tmp_path / "lin.png", log=False))
    with pytest.raises(ValueError):
        plot_layer_errors({}, tmp_path / "none.png")
