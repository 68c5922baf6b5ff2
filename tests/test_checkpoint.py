"""Checkpoints: exact round trip, no pickle, and clear errors for damaged or foreign files."""

import json
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from spikeshield import checkpoint
from spikeshield.models import create_model


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = create_model("lenet", T=2, synapse=None, neuron_params={"tau_m": 4.0, "surrogate": "sigmoid"})
    with torch.no_grad():  # make every parameter distinct from a fresh init
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return m.eval()


@pytest.fixture
def saved(model, tmp_path):
    return checkpoint.save(model, tmp_path / "model", metadata={"epoch": 3, "metrics": {"acc": 0.5}})


def _rehash(path):
    """Update config.json after editing the weights file, so only the content check can catch the edit."""
    record = json.loads((path / checkpoint.CONFIG_FILE).read_text())
    record["weights"]["sha256"] = checkpoint.sha256_file(path / checkpoint.WEIGHTS_FILE)
    (path / checkpoint.CONFIG_FILE).write_text(json.dumps(record))


def test_round_trip_is_exact(model, saved):
    loaded = checkpoint.load(saved)
    assert not loaded.training
    assert loaded.config == model.config
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_layout_and_metadata(saved):
    assert sorted(p.name for p in saved.iterdir()) == ["config.json", "model.safetensors"]
    record = checkpoint.read_config(saved)
    assert record["metadata"] == {"epoch": 3, "metrics": {"acc": 0.5}}
    assert record["model"]["name"] == "lenet" and record["weights"]["sha256"]
    assert not [p for p in saved.parent.iterdir() if p.name.startswith(".")], "temporary directories left behind"


def test_save_replaces_existing_checkpoint(model, saved):
    other = create_model("lenet", T=3, synapse=None)
    checkpoint.save(other, saved)
    assert checkpoint.load(saved).T == 3
    assert not [p for p in saved.parent.iterdir() if p.name.startswith(".")]


def test_failed_save_leaves_old_checkpoint(model, saved):
    with pytest.raises(TypeError, match="JSON"):
        checkpoint.save(model, saved, metadata={"bad": object()})
    assert checkpoint.read_config(saved)["metadata"]["epoch"] == 3
    checkpoint.load(saved)


def test_save_refuses_to_clobber_other_directories(model, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a spikeshield checkpoint"):
        checkpoint.save(model, tmp_path / "data")
    with pytest.raises(TypeError, match="create_model"):
        checkpoint.save(torch.nn.Linear(2, 2), tmp_path / "lin")


@pytest.mark.parametrize("writer", ["torch_zip", "torch_legacy", "pickle"])
def test_refuses_pickle_files(tmp_path, writer):
    path = tmp_path / "evil.pt"
    if writer == "torch_zip":
        torch.save({"weight": torch.zeros(2)}, path)
    elif writer == "torch_legacy":
        torch.save({"weight": torch.zeros(2)}, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="pickle") as err:
        checkpoint.load(path)
    msg = str(err.value)
    assert "refused" in msg and "checkpoint.save" in msg


def test_refuses_directory_of_pickles(tmp_path):
    (tmp_path / "run").mkdir()
    torch.save({"a": 1}, tmp_path / "run" / "model.pth")
    with pytest.raises(FileNotFoundError, match="pickle files are refused"):
        checkpoint.load(tmp_path / "run")


def test_missing_paths(saved, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        checkpoint.load(tmp_path / "nowhere")
    (saved / checkpoint.WEIGHTS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="weights file"):
        checkpoint.load(saved)
    (saved / checkpoint.CONFIG_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        checkpoint.load(saved)


def test_truncated_weights(saved):
    file = saved / checkpoint.WEIGHTS_FILE
    file.write_bytes(file.read_bytes()[:1000])
    with pytest.raises(ValueError, match="truncated or modified"):
        checkpoint.load(saved)
    _rehash(saved)  # even with a matching hash, a truncated file is no valid safetensors file
    with pytest.raises(ValueError, match="not a valid safetensors"):
        checkpoint.load(saved)


def test_tampered_bytes(saved):
    file = saved / checkpoint.WEIGHTS_FILE
    data = bytearray(file.read_bytes())
    data[-5] ^= 0xFF
    file.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="SHA-256"):
        checkpoint.load(saved)


def test_damaged_config(saved):
    (saved / checkpoint.CONFIG_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        checkpoint.load(saved)
    (saved / checkpoint.CONFIG_FILE).write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a spikeshield checkpoint"):
        checkpoint.load(saved)


@pytest.mark.parametrize("edit", ["missing", "extra", "shape"])
def test_weights_that_do_not_fit(saved, edit):
    file = saved / checkpoint.WEIGHTS_FILE
    tensors = load_file(file)
    key = sorted(tensors)[0]
    if edit == "missing":
        del tensors[key]
    elif edit == "extra":
        tensors["intruder.weight"] = torch.zeros(3)
    else:
        tensors[key] = torch.zeros(7)
    save_file(tensors, file)
    _rehash(saved)
    expected = {"missing": "missing keys", "extra": "unexpected keys", "shape": "mismatched tensors"}[edit]
    with pytest.raises(ValueError, match=expected):
        checkpoint.load(saved)
