"""Bring your own SNN (issue 20, docs/byo-model.md): one small convolutional SNN per framework (snnTorch,
SpikingJelly, Norse), trained briefly on FashionMNIST with that framework's own loop, then attacked

- by torchattacks alone, through the hand-written loop a user puts around the network: without resetting the
  neurons between calls (state leaks from one attack step to the next), with the reset, each in eval and in train
  mode (torchattacks switches models to eval by default);
- by torchattacks on the network wrapped with ``spikeshield.adapters.wrap`` (the same PGD on a stateless model);

and evaluated with the full protocol by the CLI: ``spikeshield eval --model benchmarks/byo_models.py:<framework>``
(the factories below load the trained weights). A fourth network arrives as NIR: an snnTorch MLP (reset to zero,
what NIR's LIF means) trained the same way and written by snnTorch's own exporter, evaluated with
``spikeshield eval --nir runs/byo/snntorch_mlp.nir``.

    python benchmarks/byo_models.py --phase train      # seconds to minutes per framework
    python benchmarks/byo_models.py --phase compare --frameworks snntorch,spikingjelly,norse
    python benchmarks/byo_models.py --phase eval       # spikeshield eval (the CLI) on each, the full protocol
    spikeshield eval --model benchmarks/byo_models.py:snntorch_model --T 8 --n-examples 200 \\
        --out benchmarks/results/byo/snntorch
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from torch import nn

from spikeshield.adapters import wrap
from spikeshield.data import load_dataset

T = 8
FRAMEWORKS = ("snntorch", "spikingjelly", "norse", "nir")
WORK = Path(os.environ.get("SPIKESHIELD_BYO_DIR", "runs/byo"))


def build(framework: str) -> nn.Module:
    """The untrained network: conv 8 - pool - LIF - conv 16 - pool - LIF - linear 10 - readout neuron."""
    torch.manual_seed(0)
    if framework == "nir":  # an snnTorch MLP that snnTorch's NIR exporter writes faithfully (see export_nir)
        import snntorch as snn

        return nn.Sequential(nn.Flatten(), nn.Linear(784, 128),
                             snn.Leaky(beta=torch.full((128,), 0.9), threshold=torch.ones(128), init_hidden=True,
                                       reset_mechanism="zero"),
                             nn.Linear(128, 10),
                             snn.Leaky(beta=torch.full((10,), 0.9), threshold=torch.ones(10), init_hidden=True,
                                       output=True, reset_mechanism="zero"))
    if framework == "snntorch":
        import snntorch as snn

        return nn.Sequential(nn.Conv2d(1, 8, 5), nn.MaxPool2d(2), snn.Leaky(beta=0.9, init_hidden=True),
                             nn.Conv2d(8, 16, 5), nn.MaxPool2d(2), snn.Leaky(beta=0.9, init_hidden=True),
                             nn.Flatten(), nn.Linear(256, 10), snn.Leaky(beta=0.9, init_hidden=True, output=True))
    if framework == "spikingjelly":
        from spikingjelly.activation_based import functional, layer, neuron

        net = nn.Sequential(layer.Conv2d(1, 8, 5), layer.MaxPool2d(2), neuron.LIFNode(tau=2.0),
                            layer.Conv2d(8, 16, 5), layer.MaxPool2d(2), neuron.LIFNode(tau=2.0),
                            layer.Flatten(), layer.Linear(256, 10), neuron.LIFNode(tau=2.0))
        functional.set_step_mode(net, "m")
        return net
    import norse.torch as norse

    return norse.SequentialState(nn.Conv2d(1, 8, 5), nn.MaxPool2d(2), norse.LIFCell(), nn.Conv2d(8, 16, 5),
                                 nn.MaxPool2d(2), norse.LIFCell(), nn.Flatten(), nn.Linear(256, 10), norse.LICell())


def run_native(framework: str, net: nn.Module, x: torch.Tensor, reset: bool = True) -> torch.Tensor:
    """Class scores ``[B, 10]`` the framework's way: spike counts (snnTorch), firing rates (SpikingJelly), mean
    leaky-integrator voltage (Norse) over T steps; ``reset=False`` skips the neurons' reset (the common bug)."""
    if framework in ("snntorch", "nir"):
        import snntorch.utils

        if reset:
            snntorch.utils.reset(net)
        return torch.stack([net(x)[0] for _ in range(T)]).mean(0)
    if framework == "spikingjelly":
        from spikingjelly.activation_based import functional

        if reset:
            functional.reset_net(net)
        return net(x.unsqueeze(0).repeat(T, 1, 1, 1, 1)).mean(0)
    state = None if reset else getattr(net, "_kept_state", None)
    if state is not None and state[-1].v.shape[0] != x.shape[0]:  # as snnTorch and SpikingJelly: new shape, new state
        state = None
    outs = []
    for _ in range(T):
        out, state = net(x, state)
        outs.append(out)
    if not reset:
        net._kept_state = state
    return torch.stack(outs).mean(0)


def train(framework: str, n_images: int, epochs: int, batch: int = 100) -> dict:
    """Each framework's own training loop style (rate cross-entropy for snnTorch, MSE on firing rates for
    SpikingJelly, cross-entropy on the mean voltage for Norse), Adam 2e-3."""
    data = load_dataset("fashion_mnist", "train")
    x_all, y_all = data.images[:n_images].float() / 255, data.labels[:n_images]
    net = build(framework)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    started = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(n_images)
        for i in range(0, n_images, batch):
            x, y = x_all[order[i:i + batch]], y_all[order[i:i + batch]]
            scores = run_native(framework, net, x)
            if framework == "spikingjelly":
                loss = nn.functional.mse_loss(scores, nn.functional.one_hot(y, 10).float())
            elif framework in ("snntorch", "nir"):
                loss = nn.functional.cross_entropy(scores * 5, y)  # spike counts (rates in [0, 1]) as logits
            else:
                loss = nn.functional.cross_entropy(scores, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    WORK.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), WORK / f"{framework}.pt")
    record = {"train_images": n_images, "epochs": epochs, "train_s": time.perf_counter() - started}
    if framework == "nir":
        record["nir_file"] = export_nir(net.eval())
    return record


def export_nir(net: nn.Module) -> str:
    """Write ``net`` with snnTorch's own NIR exporter (one beta and threshold per neuron and ``ignore_dims=[0]``,
    which its type inference needs; reset to zero, the only reset NIR's LIF has: snnTorch writes every Leaky as
    that). Returns the file's path."""
    import nir
    from snntorch.export_nir import export_to_nir

    path = WORK / "snntorch_mlp.nir"
    nir.write(path, export_to_nir(net, torch.zeros(1, 1, 28, 28), ignore_dims=[0]))
    return str(path)


def trained(framework: str) -> nn.Module:
    """The trained network of ``framework`` (weights from ``--phase train``)."""
    path = WORK / f"{framework}.pt"
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: run python benchmarks/byo_models.py --phase train first")
    net = build(framework)
    net.load_state_dict(torch.load(path, weights_only=True))
    return net.eval()


def snntorch_model() -> nn.Module:
    """Factory for ``spikeshield eval --model benchmarks/byo_models.py:snntorch_model``."""
    return trained("snntorch")


def spikingjelly_model() -> nn.Module:
    """Factory for ``spikeshield eval --model benchmarks/byo_models.py:spikingjelly_model``."""
    return trained("spikingjelly")


def norse_model() -> nn.Module:
    """Factory for ``spikeshield eval --model benchmarks/byo_models.py:norse_model`` (scores: mean LI voltage)."""
    return trained("norse")


class Native(nn.Module):
    """The loop a user writes to hand the network to an attack library (``reset`` or not)."""

    def __init__(self, framework: str, net: nn.Module, reset: bool) -> None:
        super().__init__()
        self.framework, self.net, self.reset = framework, net, reset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_native(self.framework, self.net, x, self.reset)


def compare(framework: str, n: int) -> dict:
    """Clean and torchattacks-PGD accuracy (10 steps of 2/255 at 8/255) of the native loops and the wrapped model."""
    import torchattacks

    test = load_dataset("fashion_mnist", "test")
    x, y = test.images[:n].float() / 255, test.labels[:n]
    net = trained(framework)
    models = {"native, no reset": Native(framework, net, reset=False),
              "native, reset": Native(framework, net, reset=True),
              "spikeshield.adapters.wrap": wrap(net, T=T)}
    judge = models["spikeshield.adapters.wrap"]
    out = {}
    for name, model in models.items():
        for mode in ("eval", "train"):
            torch.manual_seed(0)
            model.train(mode == "train")
            attack = torchattacks.PGD(model, eps=8 / 255, alpha=2 / 255, steps=10, random_start=True)
            attack.set_model_training_mode(model_training=mode == "train")
            x_adv = attack(x, y)
            model.train(mode == "train")
            with torch.no_grad():  # scored as a user scores it, right after the attack (state of its last step)
                reported = (model(x_adv).argmax(1) == y).float().mean().item()
            xg = x[:32].clone().requires_grad_(True)
            grad, = torch.autograd.grad(nn.functional.cross_entropy(model(xg), y[:32]), xg)
            with torch.no_grad():
                repeat = (model(x[:32]) - model(x[:32])).abs().max().item()
                judge.eval()
                clean = (judge(x).argmax(1) == y).float().mean().item()
                robust = (judge(x_adv).argmax(1) == y).float().mean().item()
            out[f"{name} / {mode}"] = {
                "clean_acc": clean, "pgd10_acc_as_reported": reported, "pgd10_acc_stateless": robust,
                "zero_gradient_images": int((grad.flatten(1).abs().sum(1) == 0).sum()),
                "max_logit_change_on_repeat": repeat}
    return out


EVAL_COMMANDS = {
    "snntorch": "--model benchmarks/byo_models.py:snntorch_model",
    "spikingjelly": "--model benchmarks/byo_models.py:spikingjelly_model",
    "norse": "--model benchmarks/byo_models.py:norse_model",
    "nir": f"--nir {WORK / 'snntorch_mlp.nir'}",
}


def cli_eval(framework: str, n: int, out: Path) -> dict:
    """``spikeshield eval`` (default attacks: AutoAttack + snn-adaptive, as a cascade) on the first ``n`` test
    images, run as a user runs it; returns the command and the record it wrote."""
    import shlex
    import subprocess

    command = f"spikeshield eval {EVAL_COMMANDS[framework]} --T {T} --n-examples {n} --no-progress --out {out}"
    started = time.perf_counter()
    printed = subprocess.run([str(Path(sys.executable).parent / "spikeshield"), *shlex.split(command)[1:]],
                             check=True, capture_output=True, text=True).stdout
    (out / "printed.txt").write_text(f"$ {command}\n{printed}")
    record = json.loads((out / "eval.json").read_text())
    return {"command": command, "wall_s": time.perf_counter() - started, "clean_acc": record["clean_acc"],
            "worst_case_acc": record["worst_case_acc"], "robust_acc": record["robust_acc"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phase", choices=("train", "compare", "eval"), required=True)
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    parser.add_argument("--train-images", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--n", type=int, default=500, help="test images of the comparison")
    parser.add_argument("--n-eval", type=int, default=200, help="test images of spikeshield eval")
    parser.add_argument("--out", default="benchmarks/results/byo")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for framework in args.frameworks.split(","):
        if args.phase == "train":
            record = train(framework, args.train_images, args.epochs)
            (out / f"{framework}_train.json").write_text(json.dumps(record, indent=1) + "\n")
        elif args.phase == "compare":
            record = {"command": "python benchmarks/byo_models.py " + " ".join(sys.argv[1:]), "n": args.n,
                      "results": compare(framework, args.n)}
            (out / f"{framework}_torchattacks.json").write_text(json.dumps(record, indent=1) + "\n")
        else:
            (out / framework).mkdir(exist_ok=True)
            record = cli_eval(framework, args.n_eval, out / framework)
        print(framework, json.dumps(record, indent=1), flush=True)


if __name__ == "__main__":
    main()
