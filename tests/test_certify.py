"""Certification over the coding noise (issue 18, item 4): Cohen et al.'s CERTIFY with RSC-I / RSC-II radii in
input space, and the L1 certificate of Bernoulli (Poisson) rate coding, on classifiers whose answer is known."""

from __future__ import annotations

import json
import math

import pytest
import torch
from scipy import stats
from torch import nn

from spikeshield.data import dataset_info
from spikeshield.encoding import RSC, Poisson
from spikeshield.evaluation import CertifyResult, certify, smoothing_of
from spikeshield.evaluation.certification import ABSTAIN, lower_confidence_bound
from spikeshield.models import SpikingModel, create_model

INFO = dataset_info("fashion_mnist")


class PixelThreshold(nn.Module):
    """Class 1 when the time mean of the first pixel's frames exceeds ``level`` (in the frames' units), else 0."""

    def __init__(self, level: float) -> None:
        super().__init__()
        self.level = level

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        score = frames[:, :, 0, 0, 0] - self.level
        return torch.stack([torch.zeros_like(score), score], dim=-1)


class Constant(nn.Module):
    """Always class 3."""

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(*frames.shape[:2], 10)
        logits[..., 3] = 1.0
        return logits


def model_with(body: nn.Module, encoder, T: int) -> SpikingModel:
    return SpikingModel(body, INFO, encoder, T, {"name": "test", "dataset": "fashion_mnist"}).eval()


def pixel_threshold_model(encoder, T: int, boundary: float) -> SpikingModel:
    """Class 1 iff the time mean of the coded first pixel exceeds ``boundary`` (pixel units)."""
    level = (boundary - INFO.mean[0]) / INFO.std[0] if encoder.normalize else boundary
    return model_with(PixelThreshold(level), encoder, T)


def image(first_pixel: float) -> torch.Tensor:
    x = torch.full((1, 1, 28, 28), 0.5)
    x[0, 0, 0, 0] = first_pixel
    return x


@pytest.mark.parametrize("coding", ["rsc1", "rsc2", "poisson"])
def test_a_constant_classifier_gets_the_closed_form_radius(coding):
    """Every draw votes class 3, so pA = alpha^(1/n) (Clopper-Pearson with n of n) and the radius is the coding's
    formula at that pA."""
    T, sigma, n, alpha = 4, 0.25, 200, 0.01
    encoder = Poisson() if coding == "poisson" else RSC(sigma, fresh_each_step=coding == "rsc2")
    result = certify(model_with(Constant(), encoder, T), torch.rand(2, 1, 28, 28), torch.tensor([3, 1]), n0=10, n=n,
                     alpha=alpha, batch_size=64, progress=False)
    p_lower = alpha ** (1 / n)
    expected = {"rsc1": sigma * stats.norm.ppf(p_lower), "rsc2": sigma / math.sqrt(T) * stats.norm.ppf(p_lower),
                "poisson": (p_lower - 0.5) / T}[coding]
    assert result.predictions == [3, 3] and result.counts == [n, n]
    assert result.p_lower == pytest.approx([p_lower] * 2, rel=1e-9)
    assert result.radii == pytest.approx([expected] * 2, rel=1e-9)
    assert result.norm == ("l1" if coding == "poisson" else "l2")
    assert result.certified_accuracy(0.0) == 0.5 and result.certified_accuracy(expected * 1.01) == 0.0


def test_a_point_on_the_decision_boundary_abstains():
    model = pixel_threshold_model(RSC(0.1), T=4, boundary=0.5)
    result = certify(model, image(0.5), torch.tensor([1]), n0=50, n=500, alpha=0.001, progress=False)
    assert result.predictions == [ABSTAIN] and result.radii == [0.0]
    assert result.certified_accuracy(0.0) == 0.0 and result.abstain_rate == 1.0


@pytest.mark.parametrize("fresh_each_step", [False, True], ids=["rsc1", "rsc2"])
def test_linear_classifier_radius_is_the_distance_to_its_boundary_in_input_space(fresh_each_step):
    """A threshold on the time mean of one pixel is a linear classifier of the input: its smoothed prediction is
    known (pA = Phi(d / s) with s = sigma for RSC-I, sigma / sqrt(T) for RSC-II), and the exact certified radius is
    the distance ``d`` to its boundary. The estimate lies just below ``d``; without RSC-II's 1/sqrt(T) it would be
    twice ``d`` (T = 4)."""
    T, sigma, d = 4, 0.1, 0.064
    model = pixel_threshold_model(RSC(sigma, fresh_each_step=fresh_each_step), T, boundary=0.5 - d)
    result = certify(model, image(0.5), torch.tensor([1]), n0=100, n=20000, alpha=0.001, batch_size=5000,
                     progress=False)
    assert result.predictions == [1]
    assert 0.93 * d <= result.radii[0] <= d
    noise = sigma / math.sqrt(T) if fresh_each_step else sigma
    assert result.p_lower[0] <= stats.norm.cdf(d / noise)


def test_poisson_l1_certificate_is_exact_for_one_step_and_sound_for_many():
    """Bernoulli coding: with T = 1 and a classifier of one spike, pA = x and the true L1 radius is x - 1/2, which
    the certificate approaches from below. With T = 8 and a majority vote over the steps the class flips where
    P(Bin(8, x') >= 5) = 1/2; the certificate (pA - 1/2) / T stays inside that radius, which ``pA - 1/2`` (no 1/T)
    would exceed."""
    one = pixel_threshold_model(Poisson(), T=1, boundary=0.5)
    result = certify(one, image(0.8), torch.tensor([1]), n0=100, n=20000, alpha=0.001, batch_size=5000,
                     progress=False)
    assert 0.95 * 0.3 <= result.radii[0] <= 0.3

    many = pixel_threshold_model(Poisson(), T=8, boundary=0.5)  # class 1 iff more than 4 of 8 spikes
    flip = next(v / 1000 for v in range(1000) if stats.binom.sf(4, 8, v / 1000) >= 0.5)
    result = certify(many, image(0.7), torch.tensor([1]), n0=100, n=20000, alpha=0.001, batch_size=5000,
                     progress=False)
    true_radius = 0.7 - flip
    assert 0 < result.radii[0] <= true_radius < result.p_lower[0] - 0.5


def test_clopper_pearson_lower_bound():
    assert lower_confidence_bound(0, 100, 0.05) == 0.0
    assert lower_confidence_bound(100, 100, 0.05) == pytest.approx(0.05 ** (1 / 100))
    assert lower_confidence_bound(90, 100, 0.05) < 0.9


def test_resume_keeps_finished_samples_and_gives_the_uninterrupted_result(tmp_path):
    model = model_with(PixelThreshold(0.0), RSC(0.3, fresh_each_step=True), T=2)
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([1, 0, 1, 1])
    whole = certify(model, x, y, n0=20, n=100, progress=False)
    state = tmp_path / "state.json"
    certify(model, x[:4], y, n0=20, n=100, progress=False, state_file=state)
    data = json.loads(state.read_text())
    data["records"] = data["records"][:2]  # as if killed after two samples
    state.write_text(json.dumps(data))
    resumed = certify(model, x, y, n0=20, n=100, progress=False, state_file=state)
    assert resumed.radii == whole.radii and resumed.predictions == whole.predictions
    with pytest.raises(ValueError, match="another certification"):
        certify(model, x, y, n0=20, n=100, alpha=0.01, progress=False, state_file=state)


def test_result_json_round_trip_curve_and_plot(tmp_path):
    model = model_with(PixelThreshold(0.0), RSC(0.2), T=2)
    result = certify(model, torch.rand(3, 1, 28, 28), torch.tensor([1, 1, 0]), n0=20, n=200, progress=False,
                     command="spikeshield certify ...")
    path = result.save_json(tmp_path / "certify.json")
    again = CertifyResult.load_json(path)
    assert again.radii == result.radii and again.command == "spikeshield certify ..."
    curve = result.curve([0.0, 0.1, 10.0])
    assert curve[0][1] >= curve[1][1] >= curve[2][1] == 0.0
    assert result.linf_radius(8 / 255) == pytest.approx(8 / 255 * 28)
    assert result.plot(tmp_path / "certify.png", empirical={"PGD": [(0.9, 0.4)]}).stat().st_size > 0


def test_models_without_a_smoothing_coding_are_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="smoothing noise"):
        smoothing_of(create_model("lenet", encoder="direct", T=2))
    assert smoothing_of(create_model("lenet", encoder="rsc2-0.25", T=3)).sigma == pytest.approx(0.5)
    model = create_model("lenet", encoder="rsc1", T=2)
    with pytest.raises(ValueError, match="alpha"):
        certify(model, torch.rand(1, 1, 28, 28), torch.tensor([0]), alpha=1.5, progress=False)
