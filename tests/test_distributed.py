"""Under torchrun: 2 gloo processes on 127.0.0.1 train as one process does, resume exactly, and a killed rank fails
the run clearly with the last checkpoint intact; ``eval`` and ``certify`` shard the examples and merge them into the
single process's result, and the state files resume a sharded run (issue 21)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from spikeshield.cli import main
from spikeshield.distributed import Context
from spikeshield.evaluation import certify, evaluate
from spikeshield.training import train_from_file

#: what may differ between a sharded and a single-process result: wall-clock times and when/how it ran
RUN_DETAILS = ("time_s", "date", "command", "git_commit")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(tmp_path: Path, name: str, epochs: int = 2, subset: int = 197, defended: bool = False,
            rat: bool = False) -> Path:
    """A LeNet T=2 run on real FashionMNIST; 197 images make a last batch of 5 (shares of 3 and 2). ``defended``:
    TA-LIF neurons (theta_v clamped after each step) and FGSM adversarial training, the examples crafted by each
    rank on its share; ``rat``: RAT's orthogonal retraction too (random rows of the large Linear layer)."""
    path = tmp_path / f"{name}.yaml"
    config = {"name": name, "seed": 3, "out_dir": str(tmp_path / name), "device": "cpu",
              "model": {"name": "lenet", "T": 2},
              "data": {"batch_size": 64, "train_subset": subset, "eval_subset": 64},
              "optim": {"epochs": epochs, "lr": 3e-3}}
    if defended:
        config["model"]["neuron"] = "talif"
        config["adversarial"] = {"attack": "fgsm", "eps": "4/255", "generate_in": "eval"}
    if rat:
        config["optim"]["rat_beta"] = 0.004
    path.write_text(yaml.safe_dump(config))
    return path


def _torchrun(config: Path, *extra: str, wait: bool = True):
    return _spikeshield_on_two_ranks("train", "--config", str(config), "--no-progress", *extra, wait=wait)


def _spikeshield_on_two_ranks(*args: str, wait: bool = True):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "spikeshield", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model" / "model.safetensors"))


def test_context_shards_cover_every_item_once():
    for world in (1, 2, 3, 5):
        for n in (0, 1, 4, 7, 64):
            parts = [Context(rank=r, world_size=world).shard(n) for r in range(world)]
            assert [i for part in parts for i in range(n)[part]] == list(range(n))
            assert max(p.stop - p.start for p in parts) - min(p.stop - p.start for p in parts) <= 1


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """The same config trained by 2 gloo processes (2 x 32 per step) and by one process (1 x 64)."""
    tmp_path = tmp_path_factory.mktemp("ddp")
    done = _torchrun(_config(tmp_path, "ddp"))
    assert done.returncode == 0, done.stdout + done.stderr
    train_from_file(_config(tmp_path, "single"), progress=False)
    return tmp_path, done.stdout + done.stderr


def test_two_ranks_train_as_one_process(two_ranks):
    tmp_path, output = two_ranks
    ddp, single = _weights(tmp_path / "ddp"), _weights(tmp_path / "single")
    assert ddp.keys() == single.keys()
    for key in single:
        torch.testing.assert_close(ddp[key], single[key], rtol=1e-4, atol=1e-5)
    lines = (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2  # rank 0 alone logged
    assert output.count("epoch 1/2") == 1
    first = json.loads(lines[0])
    assert first["train_n"] == 197 and abs(first["train_acc"] - json.loads(
        (tmp_path / "single" / "metrics.jsonl").read_text().splitlines()[0])["train_acc"]) < 0.02


@pytest.mark.parametrize("rat", [False, True])
def test_adversarial_training_and_defence_hooks_under_ddp_equal_one_process(tmp_path, rat):
    """The trainer checks after every epoch that the ranks hold the same weights (it failed here when RAT drew its
    rows from each rank's own generator). With RAT the weights of 2 ranks and of one process drift apart by up to
    ~4e-3 in 4 steps (float-order differences grow through the retraction), hence its looser tolerance."""
    done = _torchrun(_config(tmp_path, "ddp", epochs=1, defended=True, rat=rat))
    assert done.returncode == 0, done.stdout + done.stderr
    train_from_file(_config(tmp_path, "single", epochs=1, defended=True, rat=rat), progress=False)
    ddp, single = _weights(tmp_path / "ddp"), _weights(tmp_path / "single")
    assert any("theta" in key for key in single)
    for key in single:
        torch.testing.assert_close(ddp[key], single[key], rtol=1e-4, atol=1e-2 if rat else 1e-5)


def test_resume_under_ddp_equals_the_uninterrupted_run(two_ranks):
    tmp_path, _ = two_ranks
    config = _config(tmp_path, "ddp_resumed")
    first = _torchrun(config, "--stop-after-epochs", "1")
    assert first.returncode == 0, first.stdout + first.stderr
    assert len((tmp_path / "ddp_resumed" / "metrics.jsonl").read_text().splitlines()) == 1
    second = _torchrun(config, "--resume")
    assert second.returncode == 0, second.stdout + second.stderr
    resumed, straight = _weights(tmp_path / "ddp_resumed"), _weights(tmp_path / "ddp")
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)


def test_a_killed_rank_fails_the_run_and_keeps_the_checkpoint(tmp_path):
    config = _config(tmp_path, "killed", epochs=50, subset=128)
    run = _torchrun(config, wait=False)
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.time() + 300
    while not (metrics.exists() and metrics.read_text().strip()) and time.time() < deadline and run.poll() is None:
        time.sleep(0.2)
    assert run.poll() is None, run.stdout.read()
    workers = subprocess.run(["pgrep", "-P", str(run.pid)], capture_output=True, text=True).stdout.split()
    assert len(workers) == 2
    os.kill(int(workers[-1]), signal.SIGKILL)
    output, _ = run.communicate(timeout=300)
    assert run.returncode != 0
    assert "exitcode" in output and "-9" in output  # torchrun names the killed rank
    state = tmp_path / "killed" / "train_state"
    assert (state / "state.json").exists()
    resumed = _torchrun(config, "--resume", "--stop-after-epochs", "1")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr


# ------------------------------------------------------------------------------------------ sharded evaluation
def test_context_deals_items_round_robin():
    assert [i for i in range(7) if Context(rank=1, world_size=3).owns(i)] == [1, 4]
    assert Context().owns(5) and Context().all_gather("x") == ["x"]


class _Gathered(Exception):
    """Ends a simulated rank other than 0 once it handed its share over."""


def _as_ranks(monkeypatch, world: int, run):
    """``run(ctx)`` on ranks ``world - 1`` down to 0 in this process: ranks > 0 stop at their one ``all_gather``
    (their share kept), rank 0 gets every share there and returns the merged result."""
    given: dict[int, object] = {}

    def all_gather(self, value):
        given[self.rank] = value
        if self.rank:
            raise _Gathered
        return [given[r] for r in range(self.world_size)]

    monkeypatch.setattr(Context, "all_gather", all_gather)
    for rank in reversed(range(1, world)):
        with pytest.raises(_Gathered):
            run(Context(rank=rank, world_size=world))
    return run(Context(rank=0, world_size=world))


def _same_record(a: dict, b: dict) -> None:
    for key in RUN_DETAILS:
        a.pop(key, None), b.pop(key, None)
    assert a == b


def test_sharded_evaluate_merges_into_the_single_process_result(trained_lenet, fmnist_eval, monkeypatch, tmp_path):
    """Random starts and 5 batches over 3 ranks: each batch's draws come from (seed, batch index), so the merged
    per-sample verdicts, fractions and counts are the single process's, and the rank files resume."""
    from spikeshield.attacks import PGD

    x, y = fmnist_eval[0][:18], fmnist_eval[1][:18]
    kwargs = dict(eps=8 / 255, batch_size=4, progress=False, seed=5)

    def attacks():
        return ["fgsm", PGD(trained_lenet, 8 / 255, alpha=2 / 255, steps=3, random_start=True)]

    single = evaluate(trained_lenet, x, y, attacks=attacks(), **kwargs).to_dict(per_sample=True)
    state = tmp_path / "state.json"
    merged = _as_ranks(monkeypatch, 3, lambda ctx: evaluate(trained_lenet, x, y, attacks=attacks(), context=ctx,
                                                            state_file=state, **kwargs))
    _same_record(merged.to_dict(per_sample=True), dict(single))
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"state.rank{r}-of-3.json" for r in range(3)]
    ranks = [json.loads((tmp_path / f"state.rank{r}-of-3.json").read_text()) for r in range(3)]
    assert [r["sizes"] for r in ranks] == [[4, 4], [4, 2], [4]]  # batches 0 and 3, 1 and 4 (short), 2
    ranks[0]["passes"]["clean"] += 1000  # marks rank 0's share: a resumed run reads it instead of attacking again
    (tmp_path / "state.rank0-of-3.json").write_text(json.dumps(ranks[0]))
    resumed = _as_ranks(monkeypatch, 3, lambda ctx: evaluate(trained_lenet, x, y, attacks=attacks(), context=ctx,
                                                             state_file=state, **kwargs))
    assert resumed.number_forward_passes["clean"] == single["number_forward_passes"]["clean"] + 1000
    assert resumed.per_sample == merged.per_sample
    with pytest.raises(ValueError, match="different evaluation"):  # a rank file of another world size is refused
        (tmp_path / "state.rank0-of-2.json").write_text((tmp_path / "state.rank0-of-3.json").read_text())
        _as_ranks(monkeypatch, 2, lambda ctx: evaluate(trained_lenet, x, y, attacks=attacks(), context=ctx,
                                                       state_file=state, **kwargs))


def test_sharded_certify_merges_into_the_single_process_result(monkeypatch):
    from spikeshield.models import create_model

    model = create_model("lenet", T=2, encoder="rsc1-0.2").eval()
    x, y = torch.rand(5, 1, 28, 28), torch.tensor([0, 1, 2, 3, 4])
    kwargs = dict(n0=8, n=40, batch_size=20, seed=2, progress=False)
    single = certify(model, x, y, **kwargs).to_dict()
    merged = _as_ranks(monkeypatch, 2, lambda ctx: certify(model, x, y, context=ctx, **kwargs))
    _same_record(merged.to_dict(), single)


@pytest.fixture(scope="module")
def rsc_checkpoint(tmp_path_factory):
    """A stochastic model (RSC-I coding) trained one epoch on 197 images, for the torchrun eval and certify runs."""
    tmp_path = tmp_path_factory.mktemp("rsc")
    config = yaml.safe_load(_config(tmp_path, "rsc", epochs=1).read_text())
    config["model"]["encoder"] = "rsc1-0.1"
    (tmp_path / "rsc.yaml").write_text(yaml.safe_dump(config))
    train_from_file(tmp_path / "rsc.yaml", progress=False)
    return tmp_path / "rsc" / "model"


@pytest.mark.parametrize("command", ["eval", "certify"])
def test_torchrun_eval_and_certify_equal_one_process(rsc_checkpoint, tmp_path, command):
    """``torchrun --nproc_per_node 2 -m spikeshield eval|certify`` on a stochastic model writes the JSON one process
    writes (EOT, majority draws and random starts included), and only rank 0 writes it."""
    common = ["--checkpoint", str(rsc_checkpoint), "--n-examples", "10", "--batch-size", "4", "--seed", "1",
              "--device", "cpu", "--no-progress"]
    options = (["--attacks", "fgsm,pgd7", "--eot", "2", "--score-draws", "3"] if command == "eval"
               else ["--n0", "8", "--n-draws", "40"])
    sharded = _spikeshield_on_two_ranks(command, *common, *options, "--out", str(tmp_path / "sharded"))
    assert sharded.returncode == 0, sharded.stdout + sharded.stderr
    assert main([command, *common, *options, "--out", str(tmp_path / "single")]) == 0
    assert sharded.stdout.count("wrote") == 1
    name = f"{command}.json"
    _same_record(json.loads((tmp_path / "sharded" / name).read_text()),
                 json.loads((tmp_path / "single" / name).read_text()))


def test_commands_that_do_not_shard_refuse_torchrun(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert main(["audit", "--checkpoint", "nowhere"]) == 2
    assert "does not shard" in capsys.readouterr().err
