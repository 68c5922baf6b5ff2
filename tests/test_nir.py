"""NIR import / export (spikeshield.adapters.nir): exact round trips, snnTorch interop, the Euler semantics of every
neuron node, the attacker's gradient modes on imported neurons, attacks, checkpoints and clear errors."""

from __future__ import annotations

import math

import nir
import numpy as np
import pytest
import snntorch as snn
import torch
import torch.nn.functional as F
from snntorch import functional as SF
from snntorch import utils as snn_utils
from snntorch.export_nir import export_to_nir
from torch import nn

from spikeshield import checkpoint
from spikeshield.adapters.nir import LeakyIntegrator, NIRNeuron, from_nir, to_nir
from spikeshield.attacks import PGD
from spikeshield.data import load_dataset
from spikeshield.data.info import dataset_info
from spikeshield.encoding import make_encoder
from spikeshield.models import SpikingModel, create_model
from spikeshield.models.layers import TimeFold
from spikeshield.neurons import LIF, gradient_mode, record
from spikeshield.neurons.gradients import gradient_names

T_SNN = 10  # steps of the snnTorch net


@pytest.fixture(scope="module")
def images(fmnist_test):
    """256 real FashionMNIST test images in [0, 1] and their labels."""
    return fmnist_test.images[:256].float() / 255, fmnist_test.labels[:256].clone()


def _raw(model: SpikingModel) -> SpikingModel:
    """``model`` fed raw pixels (no normalisation inside): the exported graph then has no normalisation node."""
    model.encoder.normalize = False
    return model


@pytest.mark.parametrize("neuron_params", [{}, {"tau_m": math.inf, "theta": 0.5},
                                           {"form": "tau", "tau_m": 2.0, "theta": 0.2}], ids=["lif", "if", "tau-form"])
def test_round_trip_is_exact(images, neuron_params, tmp_path):
    """LeNet (PSC input filter and synapses, sum pooling, LIF / IF / time-constant form) -> NIR -> spikeshield gives
    the same per-step scores to the bit, every layer mapping onto the same float operations; so does the imported
    model's checkpoint."""
    torch.manual_seed(0)
    model = _raw(create_model("lenet", T=3, neuron_params=neuron_params)).eval()
    graph = to_nir(model)
    kinds = {type(node).__name__ for node in graph.nodes.values()}
    assert {"LI", "AvgPool2d", "Scale", "Conv2d", "Affine", "Flatten"} <= kinds
    assert ("IF" if neuron_params.get("tau_m") == math.inf else "LIF") in kinds
    imported = from_nir(graph, T=3)
    x = images[0][:64]
    with record(model) as rec:
        expected = model.forward_steps(x)
    assert len(rec.spikes) == 3 and all(s.mean() > 0.005 for s in rec.spikes.values())  # every neuron layer spikes
    assert torch.equal(imported.forward_steps(x), expected)
    assert sum(isinstance(m, LIF) and m.synapse is not None for m in imported.modules()) == 3
    loaded = checkpoint.load(checkpoint.save(imported, tmp_path / "model"))
    assert torch.equal(loaded.forward_steps(x), expected)


def test_round_trip_with_normalisation_and_batch_norm(images):
    """A VGG with batch norm and input normalisation: the normalisation becomes a per-channel 1x1 conv and each batch
    norm is folded into its conv, which changes the first currents by float32 rounding (a spike could flip only for a
    membrane within a few ulps of the threshold), so the check is equal predictions and logits within 1e-6."""
    torch.manual_seed(0)
    model = create_model("vgg5", T=3, width=0.25, hidden=64).eval()
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(1.0, 2.0)
        bn.bias.data.uniform_(-0.1, 0.1)
    for fc in (m for m in model.modules() if isinstance(m, nn.Linear)):
        fc.weight.data *= 2  # the hidden FC layers spike too
    graph = to_nir(model)
    assert graph.nodes["normalize"].weight.shape == (1, 1, 1, 1)  # the normalisation, then 3 convs with BN folded
    assert sum(isinstance(node, nir.Conv2d) for node in graph.nodes.values()) == 4
    imported = from_nir(graph, T=3)
    x = images[0][:64]
    with record(model) as rec:
        expected = model(x)
    assert len(rec.spikes) == 5 and all(s.mean() > 0.05 for s in rec.spikes.values())
    got = imported(x)
    assert torch.equal(got.argmax(1), expected.argmax(1))
    assert (got - expected).abs().max() < 1e-6


@pytest.fixture(scope="module")
def snn_net(fmnist_test):
    """A small snnTorch MLP trained briefly in snnTorch's own style: per-neuron betas in the hidden layer (they import
    as NIRNeuron), one beta in the output layer (it imports as spikeshield's LIF); reset to zero, which is what its
    NIR export says (snnTorch writes every Leaky as reset-to-zero LIF, whatever its reset_mechanism)."""
    train = load_dataset("fashion_mnist", "train")
    x_all, y_all = train.images[:4096].float() / 255, train.labels[:4096]
    torch.manual_seed(0)
    hidden = 64
    net = nn.Sequential(
        nn.Flatten(), nn.Linear(784, hidden),
        snn.Leaky(beta=torch.linspace(0.7, 0.95, hidden), threshold=torch.ones(hidden), init_hidden=True,
                  reset_mechanism="zero"),
        nn.Linear(hidden, 10),
        snn.Leaky(beta=torch.full((10,), 0.9), threshold=torch.ones(10), init_hidden=True, output=True,
                  reset_mechanism="zero"))
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    loss_fn = SF.ce_rate_loss()
    for _ in range(4):  # 256 Adam steps of 64 images
        order = torch.randperm(len(x_all))
        for start in range(0, len(x_all), 64):
            index = order[start:start + 64]
            snn_utils.reset(net)
            spikes = torch.stack([net(x_all[index])[0] for _ in range(T_SNN)])
            optimizer.zero_grad()
            loss_fn(spikes, y_all[index]).backward()
            optimizer.step()
    return net.eval()


def _snntorch_spikes(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The net's output spikes ``[T, B, 10]``, run snnTorch's way: reset the hidden states, loop the steps."""
    snn_utils.reset(net)
    with torch.no_grad():
        return torch.stack([net(x)[0] for _ in range(T_SNN)])


@pytest.fixture(scope="module")
def imported(snn_net, images):
    """The snnTorch net exported by snnTorch and imported by from_nir."""
    return from_nir(export_to_nir(snn_net, images[0][:1], ignore_dims=[0]), T=T_SNN).eval()


def test_snntorch_interop(snn_net, imported, images):
    """The imported snnTorch net gives snnTorch's own output spikes at every step, hence its spike-count
    predictions, on 256 real test images."""
    x, y = images
    expected = _snntorch_spikes(snn_net, x)
    assert (expected.sum(0).argmax(1) == y).float().mean() > 0.6  # it learned
    assert [type(m) for m in imported.body] == [TimeFold, NIRNeuron, TimeFold, LIF]
    got = imported.forward_steps(x)
    assert torch.equal(got, expected)
    assert torch.equal(imported(x).argmax(1), expected.sum(0).argmax(1))


def test_checkpoint_file_and_reexport(imported, images, tmp_path):
    """An imported model saves and loads as a checkpoint, reads from a NIR file, and exports back to the same
    model."""
    x = images[0][:64]
    expected = imported.forward_steps(x)
    loaded = checkpoint.load(checkpoint.save(imported, tmp_path / "model"))
    assert torch.equal(loaded.forward_steps(x), expected)
    nir.write(tmp_path / "model.nir", to_nir(imported))
    assert torch.equal(from_nir(tmp_path / "model.nir", T=T_SNN).forward_steps(x), expected)


def _reference_graph(rng: np.random.Generator) -> tuple[nir.NIRGraph, dict]:
    """Affine -> CubaLIF -> Affine -> LIF -> Affine -> LI, every neuron parameter different per neuron, leak voltages
    and reset values not 0."""
    def u(lo, hi, n):
        return rng.uniform(lo, hi, n)

    p = {
        "w1": rng.normal(0, 0.1, (20, 784)), "b1": u(-0.1, 0.3, 20),
        "cuba": dict(tau_syn=u(2e-4, 6e-4, 20), tau_mem=u(2e-4, 1e-3, 20), r=u(0.5, 2, 20), v_leak=u(-0.1, 0.2, 20),
                     v_threshold=u(0.5, 1, 20), v_reset=u(-0.2, 0.1, 20), w_in=u(0.5, 2, 20)),
        "w2": rng.normal(0, 0.5, (16, 20)), "b2": u(-0.1, 0.3, 16),
        "lif": dict(tau=u(1.5e-4, 1e-3, 16), r=u(0.5, 3, 16), v_leak=u(-0.1, 0.2, 16), v_threshold=u(0.3, 1, 16),
                    v_reset=u(-0.2, 0.1, 16)),
        "w3": rng.normal(0, 0.5, (10, 16)), "b3": u(-0.1, 0.1, 10),
        "li": dict(tau=u(2e-4, 1e-3, 10), r=u(0.5, 2, 10), v_leak=u(-0.1, 0.1, 10)),
    }
    graph = nir.NIRGraph.from_list(
        nir.Input(np.array([1, 28, 28])), nir.Flatten(np.array([1, 28, 28]), start_dim=0), nir.Affine(p["w1"], p["b1"]),
        nir.CubaLIF(**p["cuba"]), nir.Affine(p["w2"], p["b2"]), nir.LIF(**p["lif"]), nir.Affine(p["w3"], p["b3"]),
        nir.LI(**p["li"]), nir.Output(np.array([10])))
    return graph, p


def _reference_run(p: dict, x: np.ndarray, steps: int, dt: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The NIR ODEs stepped with forward Euler at ``dt``, written out: (CubaLIF spikes, LIF spikes, LI membrane)."""
    c, lif, li = p["cuba"], p["lif"], p["li"]
    current = x.reshape(len(x), -1) @ p["w1"].T + p["b1"]
    i_syn = v1 = v2 = v3 = 0.0
    out1, out2, out3 = [], [], []
    for _ in range(steps):
        i_syn = i_syn + dt / c["tau_syn"] * (-i_syn + c["w_in"] * current)
        v1 = v1 + dt / c["tau_mem"] * (c["v_leak"] - v1 + c["r"] * i_syn)
        s1 = (v1 > c["v_threshold"]).astype(float)
        v1 = np.where(s1 > 0, c["v_reset"], v1)
        v2 = v2 + dt / lif["tau"] * (lif["v_leak"] - v2 + lif["r"] * (s1 @ p["w2"].T + p["b2"]))
        s2 = (v2 > lif["v_threshold"]).astype(float)
        v2 = np.where(s2 > 0, lif["v_reset"], v2)
        v3 = v3 + dt / li["tau"] * (li["v_leak"] - v3 + li["r"] * (s2 @ p["w3"].T + p["b3"]))
        out1.append(s1), out2.append(s2), out3.append(v3)
    return np.stack(out1), np.stack(out2), np.stack(out3)


def test_neuron_nodes_follow_the_euler_equations(images):
    """CubaLIF, LIF and LI with per-neuron parameters, leak voltages and reset values run the NIR ODEs with forward
    Euler at dt (in float64, so rounding cannot flip a spike)."""
    graph, p = _reference_graph(np.random.default_rng(0))
    torch.set_default_dtype(torch.float64)  # weights and coefficients in float64, as the reference
    try:
        model = from_nir(graph, T=12)
    finally:
        torch.set_default_dtype(torch.float32)
    assert [type(m) for m in model.body][1::2] == [NIRNeuron, NIRNeuron, LeakyIntegrator]
    x = images[0][:32].double()
    with record(model) as rec:
        scores = model.forward_steps(x)
    s1, s2, v3 = _reference_run(p, x.numpy(), 12, 1e-4)
    assert 0.05 < s1.mean() < 0.95 and 0.05 < s2.mean() < 0.95
    assert np.array_equal(rec.spikes["body.1"].numpy(), s1) and np.array_equal(rec.spikes["body.3"].numpy(), s2)
    np.testing.assert_allclose(scores.detach().numpy(), v3, rtol=1e-9, atol=1e-12)


def test_stateless_nodes_and_threshold(images):
    """Conv2d, SumPool2d, a per-element Scale, a partial Flatten, Conv1d, a bias-free Linear and a Threshold node give
    what the same functional torch operations give, and export back to the same model."""
    rng = np.random.default_rng(1)
    w1, b1 = rng.normal(0, 0.5, (4, 1, 3, 3)).astype(np.float32), rng.normal(0, 0.1, 4).astype(np.float32)
    scale = rng.uniform(0.5, 1.5, (4, 14, 14)).astype(np.float32)
    w2, b2 = rng.normal(0, 0.3, (2, 4, 5)).astype(np.float32), rng.normal(0, 0.1, 2).astype(np.float32)
    w3 = rng.normal(0, 0.2, (10, 192)).astype(np.float32)
    graph = nir.NIRGraph.from_list(
        nir.Input(np.array([1, 28, 28])),
        nir.Conv2d(input_shape=(28, 28), weight=w1, stride=1, padding=1, dilation=1, groups=1, bias=b1),
        nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        nir.Scale(scale), nir.Flatten(np.array([4, 14, 14]), start_dim=1),
        nir.Conv1d(input_shape=196, weight=w2, stride=2, padding=0, dilation=1, groups=1, bias=b2),
        nir.Flatten(np.array([2, 96]), start_dim=0), nir.Linear(w3), nir.Threshold(np.full(10, 0.5)),
        nir.Output(np.array([10])))
    model = from_nir(graph, T=2)
    x = images[0][:32]
    t = torch.from_numpy
    h = F.avg_pool2d(F.conv2d(x, t(w1), t(b1), padding=1), 2, divisor_override=4) * t(scale)
    h = F.conv1d(h.flatten(2), t(w2), t(b2), stride=2).flatten(1) @ t(w3).T
    expected = (h > 0.5).float().expand(2, -1, -1)
    assert 0 < expected.mean() < 1
    assert torch.equal(model.forward_steps(x), expected)
    assert torch.equal(from_nir(to_nir(model), T=2).forward_steps(x), expected)


@pytest.fixture(scope="module")
def cuba_model():
    """The reference graph's model in float32, in eval mode."""
    return from_nir(_reference_graph(np.random.default_rng(0))[0], T=12).eval()


@pytest.mark.parametrize("name", [g for g in gradient_names() if g not in ("own", "ann", "ann-clamp")])
@pytest.mark.parametrize("which", ["snntorch", "cuba"])
def test_every_gradient_mode_reaches_imported_neurons(name, which, imported, cuba_model, images):
    """Under every neuron-level gradient mode the input gradient of an imported model (through NIRNeuron layers,
    plain and synaptic, and spikeshield LIFs) is finite, non-zero and not the own surrogate's (unless the mode is
    that surrogate); the forward pass is bit-identical."""
    model = imported if which == "snntorch" else cuba_model
    x, y = images[0][:16], images[1][:16]

    def forward_and_gradient():
        xg = x.clone().requires_grad_(True)
        logits = model(xg)
        return logits.detach(), torch.autograd.grad(F.cross_entropy(logits, y), xg)[0]

    own_logits, own_grad = forward_and_gradient()
    with gradient_mode(name):
        logits, grad = forward_and_gradient()
    assert torch.equal(logits, own_logits)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert name == "sigmoid" or not torch.equal(grad, own_grad)


def test_pgd_on_imported_model(imported, images):
    """PGD on the imported snnTorch net stays in the eps-ball and [0, 1] and lowers its accuracy; in eval mode the
    input gradient is non-zero."""
    x, y = images[0][:64], images[1][:64]
    xg = x.clone().requires_grad_(True)
    F.cross_entropy(imported(xg), y).backward()
    assert xg.grad.abs().sum() > 0
    torch.manual_seed(0)
    x_adv = PGD(imported, eps=8 / 255, alpha=2 / 255, steps=3)(x, y)
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        clean, adversarial = ((imported(v).argmax(1) == y).float().mean() for v in (x, x_adv))
    assert adversarial < clean


def _graph(*middle) -> nir.NIRGraph:
    """Input (a FashionMNIST image) -> Flatten -> ``middle`` -> Output (10), not type-checked."""
    image = np.array([1, 28, 28])
    nodes = [nir.Input(image), nir.Flatten(image, start_dim=0), *middle, nir.Output(np.array([10]))]
    return nir.NIRGraph.from_list(nodes, type_check=False)


def _affine(n_out: int, n_in: int) -> nir.Affine:
    return nir.Affine(np.zeros((n_out, n_in)), np.zeros(n_out))


def test_from_nir_errors():
    """Unsupported nodes, branches, recurrence and wrong shapes are refused with the node named."""
    with pytest.raises(ValueError, match="'delay' is a Delay"):
        from_nir(_graph(_affine(10, 784), nir.Delay(np.ones(10))))
    branching = _graph(_affine(10, 784))
    branching.nodes["affine_1"] = _affine(10, 784)
    branching.edges += [("flatten", "affine_1"), ("affine_1", "output")]
    with pytest.raises(ValueError, match="'flatten' \\(Flatten\\) feeds both 'affine' and 'affine_1'"):
        from_nir(branching)
    recurrent = _graph(_affine(10, 784), nir.LIF(*(np.ones(10),) * 4), _affine(10, 10))
    recurrent.edges.append(("affine_1", "lif"))
    with pytest.raises(ValueError, match="'affine_1' \\(Affine\\) feeds both 'output' and 'lif'"):
        from_nir(recurrent)
    with pytest.raises(ValueError, match="images are \\[3, 32, 32\\]"):
        from_nir(_graph(_affine(10, 784)), dataset="cifar10")
    with pytest.raises(ValueError, match="'affine' \\(Affine\\) does not fit"):
        from_nir(_graph(_affine(10, 100)))
    with pytest.raises(ValueError, match="'li' \\(LI\\) has a time constant"):
        from_nir(_graph(_affine(10, 784), nir.LI(np.full(10, 1e-5), np.ones(10), np.zeros(10))))


def test_to_nir_errors():
    """Layers and encoders NIR cannot express are refused with the layer named and the reason."""
    info = dataset_info("fashion_mnist")
    body = nn.Sequential(TimeFold(nn.Conv2d(1, 4, 3), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 13 * 13, 10)))
    maxpool = SpikingModel(body, info, make_encoder("direct"), 2, {})
    with pytest.raises(ValueError, match="body.0.1 .*max pooling"):
        to_nir(maxpool)
    with pytest.raises(ValueError, match="encoder Poisson"):
        to_nir(create_model("lenet", encoder="poisson", T=2))
    with pytest.raises(ValueError, match="body.2 \\(RandHet\\).*random"):
        to_nir(create_model("lenet", neuron="randhet", T=2))
    with pytest.raises(ValueError, match="SpikingModel"):
        to_nir(nn.Linear(2, 2))


def test_ann_twin_gradient_of_imported_model(imported, images):
    """grad="ann": the imported SNN's values, the gradient of its twin (ReLU neurons, T = 1) built from the config."""
    from spikeshield.attacks import with_ann_gradients
    from spikeshield.models import ann_twin

    x, y = images[0][:16], images[1][:16]
    twin = ann_twin(imported)
    assert twin.T == 1 and not any(isinstance(m, NIRNeuron | LIF) for m in twin.modules())
    ann = with_ann_gradients(imported)
    xg = x.clone().requires_grad_(True)
    out = ann(xg)
    assert torch.equal(out, imported(x))
    g, = torch.autograd.grad(F.cross_entropy(out, y), xg)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    assert (PGD(imported, eps=8 / 255, steps=2, grad="ann-clamp")(x, y) - x).abs().max() <= 8 / 255 + 1e-6


def test_checkpoint_loads_in_a_fresh_process_without_importing_adapters(imported, tmp_path):
    """``checkpoint.load`` of an imported model imports the NIR builder on its own (the core never imports it)."""
    import subprocess
    import sys

    path = checkpoint.save(imported, tmp_path / "model")
    code = ("import sys; from spikeshield import checkpoint; assert 'spikeshield.adapters' not in sys.modules; "
            f"m = checkpoint.load({str(path)!r}); print(type(m).__name__, m.config['name'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "SpikingModel nir"


def test_train_and_eval_from_a_nir_file(imported, snn_net, images, tmp_path):
    """``spikeshield train`` starts from a NIR file (model: {name: nir, model_params: {path: ...}}) and
    ``spikeshield eval --nir`` evaluates one."""
    import json

    import yaml

    from spikeshield.cli import main

    nir.write(tmp_path / "net.nir", export_to_nir(snn_net, images[0][:1], ignore_dims=[0]))
    config = tmp_path / "nir.yaml"
    config.write_text(yaml.safe_dump({
        "name": "nir", "out_dir": str(tmp_path / "run"), "device": "cpu",
        "model": {"name": "nir", "T": T_SNN, "model_params": {"path": str(tmp_path / "net.nir")}},
        "data": {"batch_size": 64, "train_subset": 128, "eval_subset": 64}, "optim": {"epochs": 1, "lr": 1e-3}}))
    assert main(["train", "--config", str(config), "--no-progress"]) == 0
    trained = checkpoint.load(tmp_path / "run" / "model")
    start = from_nir(tmp_path / "net.nir", T=T_SNN)
    assert trained.config["layers"] == start.config["layers"]  # the graph's architecture, now our checkpoint
    assert any(not torch.equal(a, b) for a, b in zip(trained.parameters(), start.parameters(), strict=True))
    out = tmp_path / "eval"
    assert main(["eval", "--nir", str(tmp_path / "net.nir"), "--T", str(T_SNN), "--attacks", "fgsm,pgd7",
                 "--n-examples", "16", "--out", str(out), "--no-progress"]) == 0
    record = json.loads((out / "eval.json").read_text())
    assert record["model"]["name"] == "nir" and record["n_examples"] == 16
    from spikeshield.models import build_model

    with pytest.raises(ValueError, match="takes its neurons from the graph"):
        build_model({"name": "nir", "path": str(tmp_path / "net.nir"), "neuron": "talif"})
