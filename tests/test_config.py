"""Training configs: defaults, YAML loading, and errors that name the key and what is allowed."""

from pathlib import Path

import pytest

from spikeshield.config import TrainConfig, apply_overrides, load_config, parse_config

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("**/*.yaml"))


def _error(data) -> str:
    with pytest.raises(ValueError) as err:
        parse_config(data, "test.yaml")
    return str(err.value)


def test_defaults_are_valid():
    cfg = TrainConfig()
    assert cfg.model.name == "lenet" and cfg.adversarial.attack == "none" and cfg.adversarial.generate_in == "eval"
    assert cfg.model.kwargs()["T"] == 5


def test_yaml_round_trip_and_eps_fraction(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "seed: 3\nmodel: {name: lenet, T: 4, synapse: null}\noptim: {lr: 1e-3, epochs: 2}\n"
        "adversarial: {attack: fgsm, eps: 2/255}\n"
    )
    cfg = load_config(path)
    assert cfg.seed == 3 and cfg.model.synapse is None and cfg.optim.lr == 1e-3
    assert cfg.adversarial.eps == pytest.approx(2 / 255)
    again = parse_config(cfg.model_dump(mode="json"))
    assert again == cfg


def test_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("optim: {epochs: 5}\n")
    cfg = load_config(path, overrides={"optim.epochs": 1, "data.train_subset": 100, "seed": 9})
    assert (cfg.optim.epochs, cfg.data.train_subset, cfg.seed) == (1, 100, 9)
    assert apply_overrides({}, {"a.b.c": 1}) == {"a": {"b": {"c": 1}}}


def test_unknown_key_is_named_with_allowed_keys():
    msg = _error({"optim": {"lrr": 0.1}})
    assert "config test.yaml" in msg and "key optim.lrr: unknown key" in msg and "lr" in msg
    msg = _error({"epochs": 3})
    assert "key epochs: unknown key" in msg and "optim" in msg


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"optim": {"lr": -0.1}}, ["optim.lr", "greater than 0"]),
        ({"optim": {"name": "rmsprop"}}, ["optim.name", "adam"]),
        ({"model": {"neuron": "lfi"}}, ["model.neuron", "unknown neuron 'lfi'", "lif"]),
        ({"model": {"name": "resnet1000"}}, ["model.name", "unknown model"]),
        ({"model": {"encoder": "poison"}}, ["model.encoder", "poisson"]),
        ({"model": {"dataset": "mnsit"}}, ["model.dataset", "mnist"]),
        ({"model": {"T": 0}}, ["model.T"]),
        ({"model": {"model_params": {"width": 3}}}, ["key model:", "width"]),
        ({"model": {"neuron_params": {"tau_q": 3}}}, ["key model:", "tau_q"]),
        ({"adversarial": {"attack": "fgsm", "eps": "9/0"}}, ["adversarial.eps", "fraction"]),
        ({"adversarial": {"attack": "fgsm", "eps": 2}}, ["adversarial.eps", "[0, 1]"]),
        ({"adversarial": {"attack": "fgsm"}}, ["adversarial", "eps > 0"]),
        ({"adversarial": {"attack": "cw"}}, ["adversarial.attack", "pgd"]),
        ({"optim": {"name": "adam", "nesterov": True}}, ["nesterov", "sgd"]),
        ({"data": {"batch_size": 0}}, ["data.batch_size"]),
        ({"objective": "focal"}, ["objective", "unknown objective"]),
    ],
)
def test_bad_values(data, words):
    msg = _error(data)
    for word in words:
        assert word in msg, f"{word!r} not in {msg!r}"


def test_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [1, 2")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        load_config(bad)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_are_valid(path):
    cfg = load_config(path)
    assert cfg.out_dir.startswith("runs/")
