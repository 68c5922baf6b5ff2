"""Model registry, shapes, ANN twins, statelessness, gradients and input checks."""

import math

import pytest
import torch

import spikeshield as ss
from spikeshield.models import MODELS, create_model
from spikeshield.neurons import record


@pytest.fixture(scope="module")
def lenet():
    torch.manual_seed(0)
    return create_model("lenet", dataset="fashion_mnist", T=3).eval()


def test_lenet_shapes_and_mean(lenet, fmnist_batch):
    x, _ = fmnist_batch
    steps = lenet.forward_steps(x)
    assert steps.shape == (3, len(x), 10)
    assert torch.allclose(lenet(x), steps.mean(0), atol=1e-6)


@pytest.mark.parametrize("name,dataset,size", [("vgg5", "cifar10", 32), ("vgg9", "cifar100", 32),
                                               ("vgg11", "cifar10", 32), ("vgg16", "tiny_imagenet", 64)])
def test_vgg_shapes_every_parameter_gets_a_gradient(name, dataset, size):
    model = create_model(name, dataset=dataset, T=2, hidden=64)
    x = torch.rand(2, 3, size, size)
    out = model(x)
    assert out.shape == (2, model.num_classes)
    out.logsumexp(1).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name", sorted(MODELS))
def test_ann_twin_has_identical_parameter_shapes(name):
    kw = dict(dataset="fashion_mnist" if name in ("lenet", "vgg5") else "cifar10")
    if name.startswith("vgg"):
        kw["hidden"] = 32
    elif name != "lenet":
        kw["width"] = 0.0625
    snn, ann = create_model(name, **kw), create_model(name, ann=True, **kw)
    assert [p.shape for p in snn.parameters()] == [p.shape for p in ann.parameters()]
    assert ann.T == 1 and not ann.is_stochastic
    assert not any(isinstance(m, ss.neurons.SpikingNeuron) for m in ann.modules())


def test_stateless_and_batch_independent(lenet, fmnist_batch):
    x, _ = fmnist_batch
    with torch.no_grad():
        a, b, single = lenet(x), lenet(x), lenet(x[:1])
    assert torch.equal(a, b)
    assert torch.allclose(single[0], a[0], atol=1e-5)


def test_eval_mode_input_gradient_is_nonzero(lenet, fmnist_batch):
    x, y = fmnist_batch
    x = x.clone().requires_grad_()
    torch.nn.functional.cross_entropy(lenet(x), y).backward()
    assert (x.grad.flatten(1).abs().sum(1) > 0).all()


def test_stochastic_declared():
    assert create_model("lenet").is_stochastic is False
    for enc in ["poisson", "rsc1", "rsc2"]:
        assert create_model("lenet", encoder=enc, T=2).is_stochastic is True


def test_poisson_gradient_passes_straight_through():
    model = create_model("lenet", encoder="poisson", T=4).eval()
    x = torch.rand(3, 1, 28, 28, requires_grad=True)
    model(x).sum().backward()
    assert x.grad.abs().sum() > 0


def test_rsc_noise_is_clamped_and_fresh_per_step():
    enc1 = ss.encoding.make_encoder("rsc1", std=0.5)
    enc2 = ss.encoding.make_encoder("rsc2", std=0.5)
    x = torch.rand(2, 1, 4, 4)
    f1, f2 = enc1(x, 3), enc2(x, 3)
    assert f1.min() >= 0 and f1.max() <= 1
    assert torch.equal(f1[0], f1[2]) and not torch.equal(f2[0], f2[2])


def test_rsc_presets_are_named_by_variance_and_refuse_bad_names():
    """``rsc1-0.1`` is RSC-I with variance 0.1 (the paper's RSC-0.1); through create_model and configs alike."""
    enc = ss.encoding.make_encoder("rsc2-0.25")
    assert enc.fresh_each_step and enc.std == pytest.approx(0.5) and enc.variance == pytest.approx(0.25)
    model = create_model("lenet", encoder="rsc1-0.1", T=2)
    assert not model.encoder.fresh_each_step and model.encoder.variance == pytest.approx(0.1)
    assert create_model(**model.config).encoder.std == model.encoder.std
    for bad, words in [("rsc3", "unknown encoder"), ("rsc1-loud", "variance"), ("rsc1--0.1", "variance")]:
        with pytest.raises(ValueError, match=words):
            ss.encoding.make_encoder(bad)
    with pytest.raises(ValueError, match="preset"):
        ss.encoding.make_encoder("rsc1-0.1", std=0.2)


def test_rsc_noise_is_added_in_pixel_space_clamped_then_normalised():
    """RSC-I frames are clamp(x + n) normalised by the dataset's mean and std (noise before the clamp)."""
    model = create_model("lenet", encoder="rsc1-0.5", T=2)
    x = torch.full((1, 1, 28, 28), 0.9)
    torch.manual_seed(0)
    frames = model.encoder(x, 2)
    torch.manual_seed(0)
    noise = torch.randn(1, 1, 1, 28, 28) * 0.5 ** 0.5
    assert torch.equal(frames, (x + noise).clamp(0, 1).expand(2, 1, 1, 28, 28))
    assert (frames == 1).any() and (frames == 0).any()


def test_coding_cosine_of_poisson_and_rsc(fmnist_batch):
    """Appendix B.3's check: identical codings give 1; Poisson's time mean tends to the image, so its cosine with
    direct coding rises with T; RSC noise lowers the cosine as its variance grows."""
    from spikeshield.evaluation import coding_cosine

    x, _ = fmnist_batch
    torch.manual_seed(0)
    assert coding_cosine(x, "direct", "rsc1-0", T=4) == pytest.approx(1.0)
    assert coding_cosine(x, "poisson", "direct", T=4) < coding_cosine(x, "poisson", "direct", T=64) < 1
    assert coding_cosine(x, "direct", "rsc1-0.5", T=4) < coding_cosine(x, "direct", "rsc1-0.01", T=4) < 1
    with pytest.raises(ValueError, match="T"):
        coding_cosine(x, "poisson", "direct", T=0)


def test_recording_returns_layer_traces(lenet, fmnist_batch):
    x, _ = fmnist_batch
    with record(lenet) as rec:
        lenet(x)
    assert list(rec.membrane) == ["body.2", "body.4", "body.6"]
    assert rec.membrane["body.2"].shape == (3, len(x), 32, 28, 28)
    assert set(rec.psc) == {"body.0", "body.2.synapse", "body.4.synapse", "body.6.synapse"}


def test_config_rebuilds_model():
    model = create_model("lenet", T=2, neuron_params={"surrogate": ss.neurons.Triangle(0.5)})
    clone = create_model(**model.config)
    assert clone.config == model.config
    assert model.config["neuron_params"]["surrogate"] == {"name": "triangle", "gamma": 0.5}


@pytest.mark.parametrize(
    "x,words",
    [
        (torch.rand(2, 3, 28, 28), "channel"),
        (torch.rand(2, 1, 32, 32), "28x28"),
        (torch.rand(2, 1, 28, 28) * 3, "[0, 1]"),
        (torch.full((2, 1, 28, 28), math.nan), "nan"),
        (torch.rand(1, 28, 28), "shape"),
        (torch.randint(0, 255, (2, 1, 28, 28), dtype=torch.uint8), "255"),
    ],
)
def test_bad_input_gets_clear_error(lenet, x, words):
    with pytest.raises(ValueError, match=None) as err:
        lenet(x)
    assert words.lower() in str(err.value).lower()


@pytest.mark.parametrize(
    "kwargs,words",
    [
        (dict(name="nosuchnet"), "unknown model 'nosuchnet'"),
        (dict(name="lenet", neuron="nosuch"), "unknown neuron 'nosuch'"),
        (dict(name="lenet", encoder="nosuch"), "unknown encoder 'nosuch'"),
        (dict(name="lenet", dataset="nosuch"), "unknown dataset 'nosuch'"),
        (dict(name="lenet", T=0), "T (time steps)"),
        (dict(name="lenet", hidden=3), "takes no parameter"),
        (dict(name="vgg16", dataset="fashion_mnist"), "too small"),
        (dict(name="lenet", neuron_params={"tau": 2}), "bad parameters for neuron"),
    ],
)
def test_bad_model_arguments(kwargs, words):
    with pytest.raises(ValueError) as err:
        create_model(**kwargs)
    assert words in str(err.value)
