"""The ``spikeshield`` command line: train, eval, list, and one-line errors with exit code 2."""

import json

import pytest
import yaml

from spikeshield.cli import main


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny run trained through the CLI: LeNet T=2 on 256 real FashionMNIST images, one epoch."""
    root = tmp_path_factory.mktemp("cli")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "name": "tiny", "out_dir": str(root / "run"), "device": "cpu",
        "model": {"name": "lenet", "T": 2},
        "data": {"batch_size": 64, "train_subset": 256, "eval_subset": 128},
        "optim": {"epochs": 1},
    }))
    assert main(["train", "--config", str(config), "--no-progress"]) == 0
    return root / "run"


def test_train_writes_checkpoint_metrics_and_plot(trained_run):
    assert (trained_run / "model" / "model.safetensors").exists()
    assert (trained_run / "training.png").exists()
    metrics = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1]


def test_eval_writes_json_and_report(trained_run, capsys):
    out = trained_run / "eval"
    code = main(["eval", "--checkpoint", str(trained_run / "model"), "--attacks", "fgsm,pgd7", "--eps", "8/255",
                 "--n-examples", "32", "--out", str(out), "--no-progress"])
    assert code == 0
    result = json.loads((out / "eval.json").read_text())
    assert result["n_examples"] == 32 and set(result["robust_acc"]) == {"fgsm", "pgd7"}
    assert result["eps"] == pytest.approx(8 / 255)
    assert result["worst_case_acc"] <= min(result["robust_acc"].values()) <= result["clean_acc"]
    assert result["mra"] == min(result["robust_acc"].values())
    assert "Worst case" in capsys.readouterr().out
    assert "spikeshield eval" in (out / "eval.md").read_text()


def test_eval_autoattack_cascade_with_state_file_and_gradient_suffix(trained_run):
    out, state = trained_run / "aa", trained_run / "aa" / "state.json"
    code = main(["eval", "--checkpoint", str(trained_run / "model"), "--attacks", "autoattack,pgd7@rga",
                 "--n-examples", "4", "--batch-size", "2", "--out", str(out), "--state-file", str(state),
                 "--no-progress"])
    assert code == 0
    result = json.loads((out / "eval.json").read_text())
    assert result["cascade"] is True
    assert list(result["robust_acc"]) == ["apgd-ce", "apgd-t", "fab-t", "square", "pgd7@rga"]
    assert result["attacks"]["pgd7@rga"]["grad"] == "rga"
    assert json.loads(state.read_text())["batches_done"] == 2
    accs = list(result["robust_acc"].values())
    assert accs == sorted(accs, reverse=True) and result["worst_case_acc"] == accs[-1]


def test_sweep_transfer_and_agcs_commands(trained_run, capsys):
    model, out = str(trained_run / "model"), trained_run / "metrics"
    common = ["--checkpoint", model, "--n-examples", "8", "--out", str(out), "--no-progress"]
    assert main(["sweep", *common, "--attacks", "fgsm", "--eps-list", "0,4/255,8/255"]) == 0
    sweep = json.loads((out / "sweep.json").read_text())
    assert sweep["eta"] == [0, 4, 8] and (out / "sweep.png").stat().st_size > 0
    assert "QTE" in capsys.readouterr().out
    assert main(["transfer", *common, "--source", model, "--attack", "fgsm"]) == 0
    transfer = json.loads((out / "transfer.json").read_text())
    assert transfer["source_robust_acc"] == transfer["target_robust_acc"]  # a model transfers to itself exactly
    assert transfer["transfer_rate"] in (1.0, None) and "spikeshield transfer" in transfer["command"]
    assert main(["agcs", *common]) == 0
    agcs = json.loads((out / "agcs.json").read_text())
    assert agcs["mean"] == pytest.approx(1.0, abs=1e-5)  # deterministic model: both draws give the same gradient
    assert "deterministic" in capsys.readouterr().out and (out / "agcs.png").exists()


@pytest.mark.parametrize(
    "argv,words",
    [
        (["eval", "--checkpoint", "{run}/model", "--attacks", "fgsm,nosuch"], "unknown attack 'nosuch'"),
        (["eval", "--checkpoint", "{run}/model", "--eps", "2"], "eps must lie in [0, 1]"),
        (["eval", "--checkpoint", "{run}/nowhere"], "no checkpoint"),
        (["sweep", "--checkpoint", "{run}/model", "--eps-list", "0,x"], "--eps-list"),
        (["transfer", "--checkpoint", "{run}/model", "--source", "{run}/nowhere"], "no checkpoint"),
        (["train", "--config", "{run}/missing.yaml"], "not found"),
        (["train", "--config", "{run}/missing.yaml", "--set", "optim.epochs"], "KEY=VALUE"),
        (["train", "--config", "{run}/../tiny.yaml"], "already holds a training run"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(trained_run, capsys, argv, words):
    argv = [a.replace("{run}", str(trained_run)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_list_names_the_registries(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "lenet" in out and "pgd7" in out and "rsc2" in out and "fashion_mnist" in out
    assert "autoattack-rand" in out and "rga" in out and "square" in out


def test_eval_default_is_autoattack_plus_snn_adaptive(trained_run):
    out = trained_run / "default"
    code = main(["eval", "--checkpoint", str(trained_run / "model"), "--n-examples", "3", "--tune-examples", "4",
                 "--out", str(out), "--no-progress", "--no-clamp"])
    assert code == 0
    result = json.loads((out / "eval.json").read_text())
    names = list(result["robust_acc"])
    assert names[:4] == ["apgd-ce", "apgd-t", "fab-t", "square"] and "sapgd@assg-0.45" not in names[:4]
    assert any(n.startswith("apgd-ce@hart") for n in names) and "apgd-ce@rga" in names
    assert names.count("apgd-ce") == 1  # the APGD-CE both suites hold runs once
    assert result["suites"]["snn-adaptive"]["tuned"]["hart"]["n_images"] == 4
    assert result["cascade"] and result["threat_model"] == "unclamped"
    assert "non-standard" in (out / "eval.md").read_text()


def test_check_prints_naive_and_honest_side_by_side_with_the_gap(trained_run, capsys):
    out = trained_run / "check"
    code = main(["check", "--checkpoint", str(trained_run / "model"), "--n-examples", "12", "--n-audit", "8",
                 "--tune-examples", "0", "--out", str(out), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "naive: fgsm, pgd7" in printed and "honest: apgd-ce, sapgd@assg-0.45" in printed
    assert "gap:" in printed and "flags raised:" in printed
    naive = json.loads((out / "naive.json").read_text())
    honest = json.loads((out / "honest.json").read_text())
    assert honest["cascade"] and not naive["cascade"] and naive["n_examples"] == honest["n_examples"] == 12
    assert f"{100 * (honest['worst_case_acc'] - naive['worst_case_acc']):+.1f} points" in printed
    assert json.loads((out / "audit.json").read_text())["n_examples"] == 8
    assert (out / "check.md").read_text() in printed


def test_randhet_trains_from_its_shipped_config_and_evaluates_with_eot(tmp_path):
    """configs/randhet/randhet_rat.yaml through the CLI (shrunk: 192 images, 32 held out), then eval of the selected
    checkpoint: the model is stochastic, so the attack gets EOT 10 and the verdicts 10 draws."""
    out = tmp_path / "run"
    assert main(["train", "--config", "configs/randhet/randhet_rat.yaml", "--no-progress", "--set",
                 f"out_dir={out}", "--set", "data.train_subset=192", "--set", "data.eval_subset=64", "--set",
                 "select.holdout=32", "--set", "model.T=2"]) == 0
    metrics = json.loads((out / "metrics.jsonl").read_text())
    assert metrics["train_n"] == 160 and metrics["holdout_n"] == 32 and (out / "selected").is_dir()
    code = main(["eval", "--checkpoint", str(out / "selected"), "--attacks", "fgsm", "--n-examples", "8",
                 "--out", str(out / "eval"), "--no-progress"])
    assert code == 0
    result = json.loads((out / "eval" / "eval.json").read_text())
    assert result["stochastic"] and result["score_draws"] == 10 and result["attacks"]["fgsm"]["eot"] == 10


def test_rsc_with_e_rsct_trains_from_its_shipped_configs_evaluates_and_certifies(tmp_path, capsys):
    """configs/rsc/: the ANN twin first, then RSC-I 0.1 with E-RSCT and FGSM AT distilled from it (shrunk: 160
    images, 32 held out, T = 2), evaluated with EOT (QTE at 8/255 in the record) and certified from the CLI."""
    shrink = ["--set", "data.train_subset=160", "--set", "data.eval_subset=32", "--set", "select.holdout=32"]
    ann = tmp_path / "ann"
    assert main(["train", "--config", "configs/rsc/ann.yaml", "--no-progress", "--set", f"out_dir={ann}",
                 *shrink]) == 0
    out = tmp_path / "rsc"
    assert main(["train", "--config", "configs/rsc/rsc1-0.1_erst_at.yaml", "--no-progress", "--set",
                 f"out_dir={out}", "--set", f"distill.teacher={ann / 'selected'}", "--set", "model.T=2",
                 *shrink]) == 0
    assert main(["eval", "--checkpoint", str(out / "selected"), "--attacks", "fgsm,pgd7", "--n-examples", "8",
                 "--out", str(out / "eval"), "--no-progress"]) == 0
    result = json.loads((out / "eval" / "eval.json").read_text())
    assert result["stochastic"] and set(result["qte"]) == {"fgsm", "pgd7"}
    assert "QTE" in (out / "eval" / "eval.md").read_text()
    capsys.readouterr()
    assert main(["certify", "--checkpoint", str(out / "selected"), "--n-examples", "3", "--n0", "10", "--n", "50",
                 "--radii", "0,0.1", "--out", str(out / "cert"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    certified = json.loads((out / "cert" / "certify.json").read_text())
    assert certified["coding"] == "rsc1" and certified["norm"] == "l2" and len(certified["radii"]) == 3
    assert "certified accuracy" in printed and (out / "cert" / "certify.png").stat().st_size > 0
    assert not (out / "cert" / "certify-state.json").exists()
    wrong = main(["certify", "--checkpoint", str(ann / "selected"), "--n-examples", "2", "--out", str(tmp_path / "x"),
                  "--no-progress"])
    assert wrong == 2 and "smoothing noise" in capsys.readouterr().err
