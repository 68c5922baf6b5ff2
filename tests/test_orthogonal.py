"""RAT's orthogonal retraction (issue 17, item 4 part): the update rule, the row subsampling, the trainer hook."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeshield.config import TrainConfig
from spikeshield.training import orthogonal_retraction
from spikeshield.training.orthogonal import ROW_SUBSAMPLE_MIN, ROW_SUBSAMPLE_SHARE


def test_the_retraction_is_the_formula_and_moves_rows_towards_orthonormal():
    torch.manual_seed(0)
    conv, fc = nn.Conv2d(3, 8, 3), nn.Linear(20, 10)
    q, _ = torch.linalg.qr(torch.randn(20, 10))
    with torch.no_grad():
        fc.weight.copy_(q.T + 0.05 * torch.randn(10, 20))  # near-orthonormal rows, where the retraction contracts
    model = nn.Sequential(conv, nn.Flatten(), fc)
    w_conv, w_fc = conv.weight.detach().view(8, -1).clone(), fc.weight.detach().clone()
    orthogonal_retraction(model, 0.004)
    assert torch.allclose(conv.weight.view(8, -1), 1.004 * w_conv - 0.004 * w_conv @ w_conv.T @ w_conv, atol=1e-6)
    assert torch.allclose(fc.weight, 1.004 * w_fc - 0.004 * w_fc @ w_fc.T @ w_fc, atol=1e-6)

    def off(w: torch.Tensor) -> float:
        return (w @ w.T - torch.eye(w.shape[0])).norm().item()

    before = off(fc.weight.detach())
    for _ in range(50):
        orthogonal_retraction(model, 0.05)
    assert off(fc.weight.detach()) < 0.5 * before
    with pytest.raises(ValueError, match="beta"):
        orthogonal_retraction(model, 0.0)


def test_a_wide_linear_layer_updates_a_random_share_of_its_rows():
    fc = nn.Linear(16, ROW_SUBSAMPLE_MIN)
    before = fc.weight.detach().clone()
    torch.manual_seed(1)
    orthogonal_retraction(fc, 0.01)
    changed = (fc.weight.detach() != before).any(1)
    assert int(changed.sum()) == int(ROW_SUBSAMPLE_SHARE * ROW_SUBSAMPLE_MIN)


def test_the_config_switches_it_on_after_every_step():
    cfg = TrainConfig.model_validate({"name": "t", "optim": {"rat_beta": 0.004}})
    assert cfg.optim.rat_beta == 0.004 and TrainConfig.model_validate({"name": "t"}).optim.rat_beta == 0
    with pytest.raises(ValueError):
        TrainConfig.model_validate({"name": "t", "optim": {"rat_beta": -1}})


def test_fgsm_with_a_small_random_start_for_randhet_training():
    """RandHet-SNN's AT: FGSM from a uniform start within eps / 10, the result inside the eps-ball."""
    from spikeshield.attacks import FGSM
    from spikeshield.models import create_model
    from spikeshield.training import make_training_attack

    model = create_model("lenet", dataset="fashion_mnist", neuron="randhet", T=2).eval()
    x, y = torch.rand(4, 1, 28, 28), torch.arange(4)
    eps = 4 / 255
    torch.manual_seed(0)
    a = FGSM(model, eps, start=eps / 10, eot=1)(x, y)
    torch.manual_seed(0)
    b = FGSM(model, eps, start=eps / 10, eot=1)(x, y)
    assert torch.equal(a, b) and (a - x).abs().max() <= eps + 1e-7
    assert FGSM(model, eps, start=eps / 10).settings()["start"] == pytest.approx(eps / 10)
    with pytest.raises(ValueError, match="exceed eps"):
        FGSM(model, eps, start=2 * eps)
    cfg = TrainConfig.model_validate({"name": "t", "model": {"neuron": "randhet"},
                                      "adversarial": {"attack": "fgsm", "eps": "4/255", "start": "0.4/255"}})
    attack = make_training_attack(model, cfg)
    assert attack.start == pytest.approx(0.4 / 255) and attack.eot == 1 and attack.score_draws == 1


def test_frozen_weights_are_not_retracted():
    frozen, trained = nn.Linear(4, 3), nn.Linear(4, 3)
    frozen.requires_grad_(False)
    before = frozen.weight.clone(), trained.weight.clone()
    with torch.no_grad():
        orthogonal_retraction(nn.Sequential(frozen, nn.ReLU(), trained), 0.1)
    assert torch.equal(frozen.weight, before[0]) and not torch.equal(trained.weight, before[1])
