"""TA-LIF (HoSNN, METHODS 1): exactly LIF at theta_v = 0, the threshold dynamics against a hand loop, training hooks."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import spikeshield as ss
from spikeshield.config import TrainConfig
from spikeshield.models import create_model
from spikeshield.neurons import LIF, PSC, TALIF, LIFParameters, SpikingNeuron, TALIFParameters, gradient_mode
from spikeshield.training.trainer import make_optimizer


def talif_by_hand(current, theta_v, nds, tau_m=5.0, theta0=1.0, k=5.0):
    """Independent TA-LIF loop (decay form, sigmoid surrogate with slope k through torch's own sigmoid trick)."""
    lam = 1 - 1 / tau_m
    u_prev = s_prev = None
    theta = torch.full_like(current[0], theta0)
    out = []
    for t in range(current.shape[0]):
        u = current[t] if u_prev is None else current[t] + lam * u_prev * (1 - s_prev)
        theta = theta + theta_v * (u - nds[t])
        v = u - theta
        soft = torch.sigmoid(k * v)
        s = (v > 0).to(v.dtype) + (soft - soft.detach())  # exact step forward, sigmoid backward
        out.append(s)
        u_prev, s_prev = u, s
    return torch.stack(out)


def test_theta_v_zero_is_exactly_lif():
    current = torch.randn(5, 4, 3, 6, 6) + 0.8
    talif = TALIF((3, 6, 6), steps=5, synapse=PSC(3.0))
    with torch.no_grad():
        talif.theta_v.zero_()
    talif.set_nds(torch.randn(5, 3, 6, 6))  # irrelevant when theta_v = 0
    lif = LIF(LIFParameters(), PSC(3.0))
    x1, x2 = current.clone().requires_grad_(True), current.clone().requires_grad_(True)
    out, ref = talif(x1), lif(x2)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    g = torch.randn_like(out)
    (g1,), (g2,) = torch.autograd.grad((out * g).sum(), x1), torch.autograd.grad((ref * g).sum(), x2)
    torch.testing.assert_close(g1, g2, rtol=1e-5, atol=1e-6)


def test_threshold_dynamics_and_gradients_match_a_hand_loop():
    torch.manual_seed(1)
    current = (torch.randn(4, 3, 10, dtype=torch.float64) + 0.9).requires_grad_(True)
    talif = TALIF((10,), steps=4).double()
    with torch.no_grad():
        talif.theta_v.uniform_(0.0, 0.5)
    talif.set_nds(torch.rand(4, 10, dtype=torch.float64))
    out = talif(current)
    ref = talif_by_hand(current, talif.theta_v, talif.nds)
    assert torch.equal(out, ref.detach())
    upstream = torch.randn_like(out)
    g_ours = torch.autograd.grad((out * upstream).sum(), [current, talif.theta_v])
    g_ref = torch.autograd.grad((ref * upstream).sum(), [current, talif.theta_v])
    for a, b in zip(g_ours, g_ref, strict=True):
        torch.testing.assert_close(a, b)
    assert g_ours[1].abs().sum() > 0  # the threshold is in the graph: attacks and training see it


def fused_against_step_loop(p, shape, batch, dtype, tau_s):
    """Forward, membrane and gradients (input, theta_v) of TA-LIF's fused kernel against its step loop."""
    torch.manual_seed(2)
    T = 4
    talif = TALIF(shape, steps=T + 1, p=p, synapse=PSC(tau_s) if tau_s else None).to(dtype)
    with torch.no_grad():
        talif.theta_v.uniform_(0.0, 0.6)
    talif.set_nds(torch.rand(T + 1, *shape, dtype=dtype))
    scale = 4 if p.form == "tau" else 1
    current = ((torch.randn(T, batch, *shape) + 0.9) * scale).to(dtype).requires_grad_(True)
    out, membrane = talif.run(current, talif.surrogate)
    ref, ref_membrane = SpikingNeuron.run(talif, current, talif.surrogate)  # the step loop under autograd
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else {}
    torch.testing.assert_close(out, ref, **tol)
    torch.testing.assert_close(membrane, ref_membrane, **tol)
    upstream = torch.randn_like(out)
    ours = torch.autograd.grad((out * upstream).sum(), [current, talif.theta_v])
    theirs = torch.autograd.grad((ref * upstream).sum(), [current, talif.theta_v])
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, **(dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else {}))
    assert ours[1].abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("form", "detach_reset", "tau_s", "surrogate"), [
    ("decay", False, 3.0, "sigmoid"), ("decay", True, None, "triangle"), ("tau", False, None, "arctan"),
    ("tau", True, 2.0, "sigmoid")])
def test_fused_kernel_matches_the_step_loop(dtype, form, detach_reset, tau_s, surrogate):
    p = TALIFParameters(tau_m=4.0, tau_v=3.0, form=form, surrogate=surrogate, detach_reset=detach_reset)
    fused_against_step_loop(p, (3, 5, 7), 6, dtype, tau_s)


def test_fused_kernel_matches_the_step_loop_across_blocks_and_chunks():
    # 2,100 neurons: two compiled blocks per sample; 20 samples: two backward chunks of the batch
    fused_against_step_loop(TALIFParameters(tau_m=4.0, tau_v=3.0), (2100,), 20, torch.float64, 3.0)


def test_fused_kernel_refuses_more_steps_than_its_nds():
    with pytest.raises(ValueError, match="time steps"):
        TALIF((4,), steps=2)(torch.rand(3, 1, 4))


def test_create_model_talif_checkpoint_round_trip_keeps_the_nds(tmp_path):
    model = create_model("lenet", neuron="talif", neuron_params={"tau_v": 4.0}, T=3)
    talifs = [m for m in model.modules() if isinstance(m, TALIF)]
    assert [tuple(m.theta_v.shape) for m in talifs] == [(32, 28, 28), (64, 14, 14), (1024,)]
    assert all(torch.allclose(m.theta_v, torch.full_like(m.theta_v, 0.25)) for m in talifs)
    for m in talifs:
        m.set_nds(torch.randn_like(m.nds))
    ss.checkpoint.save(model, tmp_path / "m")
    loaded = ss.checkpoint.load(tmp_path / "m")
    for a, b in zip(talifs, [m for m in loaded.modules() if isinstance(m, TALIF)], strict=True):
        assert torch.equal(a.nds, b.nds) and torch.equal(a.theta_v, b.theta_v)
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(model(x), loaded(x))
    with pytest.raises(ValueError, match="NDS must have shape"):
        talifs[0].set_nds(torch.zeros(3, 10))
    with pytest.raises(ValueError, match="tau_v"):
        TALIFParameters(tau_v=0)


def test_trainer_gives_theta_v_a_tenth_of_the_lr_and_clamps_it():
    model = create_model("lenet", neuron="talif", T=2)
    cfg = TrainConfig()
    opt = make_optimizer(model, cfg)
    by_id = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    talif = next(m for m in model.modules() if isinstance(m, TALIF))
    assert by_id[id(talif.theta_v)] == pytest.approx(cfg.optim.lr / 10)
    assert by_id[id(model.body[1][0].weight)] == pytest.approx(cfg.optim.lr)
    assert len(by_id) == len(list(model.parameters()))
    with torch.no_grad():
        talif.theta_v.fill_(-0.3)
    talif.after_step()
    assert (talif.theta_v == 0).all()


@pytest.mark.parametrize("grad", ["own", "triangle", "bptr", "rga", "hart", "hart-mix", "pdsg", "assg"])
def test_every_gradient_mode_works_on_talif_without_changing_the_forward(grad):
    model = create_model("lenet", neuron="talif", T=2).eval()
    x, y = torch.rand(2, 1, 28, 28), torch.tensor([3, 7])
    own = model(x)
    xr = x.clone().requires_grad_(True)
    with gradient_mode(None if grad == "own" else grad):
        out = model(xr)
        (g,) = torch.autograd.grad(F.cross_entropy(out, y), xr)
    assert torch.equal(out.detach(), own) and torch.isfinite(g).all()


def test_collect_nds_is_the_mean_membrane_and_installs_into_talif(fmnist_batch):
    from spikeshield.defenses.hosnn import collect_nds, install_nds
    from spikeshield.neurons import record

    x = fmnist_batch[0][:10]
    lif = create_model("lenet", T=3).train()
    nds = collect_nds(lif, x, batch_size=4, progress=False)
    assert lif.training  # mode restored
    lif.eval()
    with record(lif) as rec:
        lif(x)
    assert set(nds) == {"body.2", "body.4", "body.6"}
    for name, value in nds.items():
        torch.testing.assert_close(value, rec.membrane[name].mean(1), rtol=1e-5, atol=1e-6)
    assert collect_nds(lif, [(x[:5], None), (x[5:], None)], progress=False).keys() == nds.keys()
    hosnn = create_model("lenet", neuron="talif", T=3)
    install_nds(hosnn, nds)
    assert torch.equal(hosnn.body[2].nds, nds["body.2"])
    with pytest.raises(ValueError, match="no TA-LIF layers"):
        install_nds(lif, nds)
    with pytest.raises(ValueError, match="no NDS for"):
        install_nds(hosnn, {"body.2": nds["body.2"]})


def test_hosnn_training_from_config_installs_the_lif_nds(tmp_path):
    from spikeshield.config import parse_config
    from spikeshield.data import batches, load_dataset
    from spikeshield.defenses.hosnn import collect_nds
    from spikeshield.training import train
    from spikeshield.training.trainer import _TRAIN_SUBSET_STREAM, random_subset

    common = {"seed": 0, "device": "cpu", "data": {"train_subset": 48, "eval_subset": 16, "batch_size": 16},
              "optim": {"epochs": 1}}
    model = {"T": 2}
    lif = train(parse_config({**common, "out_dir": str(tmp_path / "lif"), "model": model}), progress=False)
    cfg = parse_config({**common, "out_dir": str(tmp_path / "hosnn"), "model": {**model, "neuron": "talif"},
                        "hosnn": {"nds_from": str(tmp_path / "lif" / "model")}})
    hosnn = train(cfg, progress=False).model
    train_set = random_subset(load_dataset("fashion_mnist", "train"), 48, 0, _TRAIN_SUBSET_STREAM)
    expected = collect_nds(lif.model, batches(train_set, 256), progress=False)
    loaded = ss.checkpoint.load(tmp_path / "hosnn" / "model")
    for name, value in expected.items():
        torch.testing.assert_close(loaded.get_submodule(name).nds, value)
        assert (hosnn.get_submodule(name).theta_v >= 0).all()
    warm = parse_config({**common, "out_dir": str(tmp_path / "warm"), "model": {**model, "neuron": "talif"},
                         "hosnn": {"nds_from": str(tmp_path / "lif" / "model"), "warm_start": True},
                         "optim": {"epochs": 1, "lr": 1e-12}})
    warmed = train(warm, progress=False).model
    torch.testing.assert_close(warmed.body[1][0].weight, lif.model.body[1][0].weight, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="needs model.neuron: talif"):
        parse_config({"hosnn": {"nds_from": "x"}})


@pytest.mark.parametrize("tau_s", [None, 3.0])
def test_hosnn_code_gradient_is_the_surrogate_at_theta0_through_the_psc_only(tau_s):
    from spikeshield.neurons import psc_kernel

    torch.manual_seed(2)
    current = torch.randn(4, 3, 10, dtype=torch.float64) + 0.9
    neuron = TALIF((10,), steps=4, synapse=PSC(tau_s) if tau_s else None).double()
    neuron.set_nds(torch.rand(4, 10, dtype=torch.float64))
    upstream = torch.randn(4, 3, 10, dtype=torch.float64)
    x = current.clone().requires_grad_(True)
    with gradient_mode("hosnn-code"):
        out = neuron(x)
        (g,) = torch.autograd.grad((out * upstream).sum(), x)
    assert torch.equal(out, neuron(current))
    _, membrane = neuron.run(current, neuron.surrogate)
    through = torch.einsum("st,sbn->tbn", psc_kernel(4, tau_s, dtype=torch.float64), upstream) if tau_s else upstream
    torch.testing.assert_close(g, through * neuron.surrogate.derivative(membrane - 1.0))


def test_hosnn_trains_and_evaluates_from_the_cli(tmp_path):
    import yaml

    from spikeshield.cli import main

    common = {"device": "cpu", "model": {"name": "lenet", "T": 2},
              "data": {"batch_size": 16, "train_subset": 48, "eval_subset": 16}, "optim": {"epochs": 1}}
    (tmp_path / "lif.yaml").write_text(yaml.safe_dump({**common, "out_dir": str(tmp_path / "lif")}))
    hosnn = {**common, "out_dir": str(tmp_path / "hosnn"), "model": {**common["model"], "neuron": "talif"},
             "hosnn": {"nds_from": str(tmp_path / "lif" / "model")}}
    (tmp_path / "hosnn.yaml").write_text(yaml.safe_dump(hosnn))
    assert main(["train", "--config", str(tmp_path / "lif.yaml"), "--no-progress"]) == 0
    assert main(["train", "--config", str(tmp_path / "hosnn.yaml"), "--no-progress"]) == 0
    model = ss.checkpoint.load(tmp_path / "hosnn" / "model")
    assert any(m.nds.abs().sum() > 0 for m in model.modules() if isinstance(m, TALIF))
    out = tmp_path / "eval"
    assert main(["eval", "--checkpoint", str(tmp_path / "hosnn" / "model"), "--attacks", "fgsm,pgd7@hosnn-code",
                 "--n-examples", "8", "--out", str(out), "--no-progress"]) == 0
    result = json.loads((out / "eval.json").read_text())
    assert set(result["robust_acc"]) == {"fgsm", "pgd7@hosnn-code"}
    assert result["attacks"]["pgd7@hosnn-code"]["grad"] == "hosnn-code"
