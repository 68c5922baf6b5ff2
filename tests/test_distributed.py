"""Training under torchrun: 2 gloo processes on 127.0.0.1 train as one process does, resume exactly, and a killed
rank fails the run clearly with the last checkpoint intact (issue 21)."""

from __future__ import annotations

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

from spikeshield.distributed import Context
from spikeshield.training import train_from_file


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(tmp_path: Path, name: str, epochs: int = 2, subset: int = 197) -> Path:
    """A LeNet T=2 run on real FashionMNIST; 197 images make a last batch of 5 (shares of 3 and 2)."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": name, "seed": 3, "out_dir": str(tmp_path / name), "device": "cpu",
        "model": {"name": "lenet", "T": 2},
        "data": {"batch_size": 64, "train_subset": subset, "eval_subset": 64},
        "optim": {"epochs": epochs, "lr": 3e-3}}))
    return path


def _torchrun(config: Path, *extra: str, wait: bool = True):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "spikeshield", "train", "--config", str(config),
           "--no-progress", *extra]
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
    import json

    first = json.loads(lines[0])
    assert first["train_n"] == 197 and abs(first["train_acc"] - json.loads(
        (tmp_path / "single" / "metrics.jsonl").read_text().splitlines()[0])["train_acc"]) < 0.02


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
