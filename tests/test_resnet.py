"""Spiking ResNet-19s (issue 17, item 3): shapes on every dataset size, any neuron, the width multiplier, the twin."""

from __future__ import annotations

import pytest
import torch

from spikeshield.models import create_model
from spikeshield.models.resnet import SpikingBasicBlock
from spikeshield.neurons import SpikingNeuron


@pytest.mark.parametrize("name", ["resnet19", "sew_resnet19"])
@pytest.mark.parametrize("dataset", ["fashion_mnist", "cifar10"])
def test_resnets_run_on_each_image_size_and_keep_gradients_in_eval_mode(name, dataset):
    model = create_model(name, dataset=dataset, T=2, width=0.0625).eval()
    info = model.info
    x = torch.rand(2, info.channels, info.size, info.size, generator=torch.Generator().manual_seed(0))
    assert model.forward_steps(x).shape == (2, 2, info.num_classes)
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(xr).logsumexp(1).sum(), xr)
    assert g.abs().sum() > 0
    blocks = [m for m in model.modules() if isinstance(m, SpikingBasicBlock)]
    assert len(blocks) == 8 and all(b.sew == (name == "sew_resnet19") for b in blocks)
    # SEW: a neuron in each downsampling shortcut; tdBN: a plain conv1x1-BN shortcut and an FC-256 hidden layer
    shortcut_neurons = sum(isinstance(m, SpikingNeuron) for b in blocks for m in b.shortcut.modules())
    assert shortcut_neurons == (2 if name == "sew_resnet19" else 0)


def test_width_scales_channels_and_any_neuron_and_the_ann_twin_work():
    small = create_model("sew_resnet19", dataset="fashion_mnist", T=2, width=0.125)
    wide = create_model("sew_resnet19", dataset="fashion_mnist", T=2, width=0.25)
    count = [sum(p.numel() for p in m.parameters()) for m in (small, wide)]
    assert 3.5 < count[1] / count[0] < 4.5  # conv weights grow with width^2
    for neuron in ("randhet", "het", "talif"):
        model = create_model("resnet19", dataset="fashion_mnist", T=2, width=0.0625, neuron=neuron).eval()
        assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
        assert model.is_stochastic == (neuron == "randhet")
    twin = create_model("sew_resnet19", dataset="fashion_mnist", width=0.0625, ann=True).eval()
    assert not any(isinstance(m, SpikingNeuron) for m in twin.modules())
    assert twin(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match="width"):
        create_model("resnet19", width=0.0)


@pytest.mark.parametrize("name, params", [("senet18", 11.26), ("resnet14", 2.78), ("resnet20", 0.27),
                                          ("wrn16_8", 10.96)])
def test_purification_networks_have_their_published_sizes(name, params):
    # CIFAR10 parameter counts of the reference networks (ResNet-20 0.27M, WRN-16-8 11.0M, SENet-18 11.3M)
    model = create_model(name, dataset="cifar10", T=1)
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(params, abs=0.01)


@pytest.mark.parametrize("name", ["senet18", "resnet14", "resnet20", "wrn16_8"])
@pytest.mark.parametrize("dataset", ["fashion_mnist", "svhn", "cifar100", "tiny_imagenet", "imagenet"])
def test_purification_networks_run_on_every_dataset_with_mlf_neurons(name, dataset):
    model = create_model(name, dataset=dataset, T=2, width=1 / 16, neuron="mlf").eval()
    info = model.info
    x = torch.rand(2, info.channels, info.size, info.size, generator=torch.Generator().manual_seed(0))
    xr = x.clone().requires_grad_(True)
    logits = model(xr)
    assert logits.shape == (2, info.num_classes)
    (g,) = torch.autograd.grad(logits.logsumexp(1).sum(), xr)
    assert g.abs().sum() > 0
    twin = create_model(name, dataset=dataset, width=1 / 16, neuron="mlf", ann="clamp").eval()
    assert twin(x).shape == (2, info.num_classes)
