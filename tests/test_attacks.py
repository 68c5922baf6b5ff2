"""Tests of spikeshield.attacks: the eps-ball contract, model untouched, real gradients, EOT, errors, registry."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import TinyNet
from hypothesis import given, settings
from hypothesis import strategies as st

from spikeshield.attacks import (
    APGD,
    APGDT,
    ATTACKS,
    BIM,
    FGSM,
    MIFGSM,
    PGD,
    RFGSM,
    Attack,
    GaussianNoise,
    make_attack,
    parse_attack_list,
)
from spikeshield.models import create_model
from spikeshield.neurons.gradients import gradient_mode

EPS = 8 / 255


@pytest.fixture(scope="module")
def batch(fmnist_batch) -> tuple[torch.Tensor, torch.Tensor]:
    """16 real FashionMNIST test images and their true labels."""
    return fmnist_batch


def small_attacks(model, eps=EPS, **kw) -> list[Attack]:
    """One instance of every attack class, with few steps."""
    return [FGSM(model, eps, **kw), RFGSM(model, eps, **kw), BIM(model, eps, steps=3, **kw),
            PGD(model, eps, alpha=eps / 2, steps=3, **kw)]


# ------------------------------------------------------------------------------------------ the eps-ball contract
@settings(max_examples=80, deadline=None)
@given(channels=st.integers(1, 3), size=st.integers(1, 5), classes=st.integers(2, 5), batch=st.integers(1, 4),
       eps=st.floats(0, 1), steps=st.integers(1, 3), which=st.integers(0, 8), targeted=st.booleans(),
       eot=st.integers(1, 3), noise=st.sampled_from([0.0, 0.1]), seed=st.integers(0, 2**16))
def test_output_inside_ball_and_box(channels, size, classes, batch, eps, steps, which, targeted, eot, noise, seed):
    g = torch.Generator().manual_seed(seed)
    model = TinyNet(channels, size, classes, noise)
    x = torch.rand(batch, channels, size, size, generator=g)
    x[0, 0, 0, 0] = 1.0  # pixels on the box's edges
    x[-1, -1, -1, -1] = 0.0
    y = torch.randint(0, classes, (batch,), generator=g)
    dlr = "dlr" if classes >= 3 else "ce"  # DLR needs 3 classes
    attack = [FGSM(model, eps, targeted=targeted, eot=eot),
              RFGSM(model, eps, targeted=targeted, eot=eot),
              BIM(model, eps, steps=steps, targeted=targeted, eot=eot),
              PGD(model, eps, alpha=max(eps / 3, 1e-3), steps=steps, targeted=targeted, eot=eot),
              MIFGSM(model, eps, alpha=max(eps / 2, 1e-3), steps=steps, targeted=targeted, eot=eot),
              APGD(model, eps, steps=steps, restarts=2, targeted=targeted, eot=eot),
              APGD(model, eps, loss=dlr, steps=steps, targeted=targeted, eot=eot),
              APGDT(model, eps, steps=steps, n_target_classes=2, eot=eot) if classes >= 3 else
              APGD(model, eps, steps=steps, eot=eot),
              GaussianNoise(model, eps, std=0.3)][which]
    x_adv = attack(x, y)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert not x_adv.requires_grad and x_adv.grad_fn is None
    assert (x_adv - x).abs().max().item() <= eps + 1e-6
    assert x_adv.min().item() >= 0 and x_adv.max().item() <= 1
    assert attack.forward_passes >= batch or isinstance(attack, GaussianNoise)


def test_lenet_attacks_stay_in_ball_and_leave_the_model_alone(trained_lenet, batch):
    x, y = batch
    before = {k: v.clone() for k, v in trained_lenet.state_dict().items()}
    for attack in small_attacks(trained_lenet):
        x_adv = attack(x, y)
        assert x_adv.shape == x.shape and not x_adv.requires_grad
        assert (x_adv - x).abs().max().item() <= EPS + 1e-6, type(attack).__name__
        assert 0 <= x_adv.min().item() and x_adv.max().item() <= 1
        assert not trained_lenet.training, f"{type(attack).__name__} switched the model to train mode"
    after = trained_lenet.state_dict()
    assert all(torch.equal(before[k], v) for k, v in after.items()), "parameters or buffers changed"
    assert all(p.grad is None for p in trained_lenet.parameters()), "an attack accumulated parameter gradients"


def test_attack_keeps_train_mode(batch):
    model = create_model("lenet", dataset="fashion_mnist", T=2).train()  # untrained: He init, it spikes
    PGD(model, EPS, steps=1)(*batch)
    assert model.training


def test_attack_under_no_grad_still_works(trained_lenet, batch):
    x, y = batch
    with torch.no_grad():
        x_adv = FGSM(trained_lenet, EPS)(x, y)
    assert (x_adv - x).abs().max().item() > EPS / 2


# --------------------------------------------------------------------------------------------- real gradients
def test_eval_mode_snn_has_nonzero_input_gradient(trained_lenet, batch):
    x, y = batch
    grad = FGSM(trained_lenet, EPS).input_gradient(x, y)
    assert torch.isfinite(grad).all()
    assert (grad.flatten(1).abs().sum(1) > 0).all(), "some samples got a zero input gradient"


def test_untargeted_attacks_raise_loss(trained_lenet, batch):
    x, y = batch
    with torch.no_grad():
        clean_loss = F.cross_entropy(trained_lenet(x), y).item()
    for attack in small_attacks(trained_lenet):
        with torch.no_grad():
            out = trained_lenet(attack(x, y))
        assert F.cross_entropy(out, y).item() > clean_loss, type(attack).__name__


def test_attacks_lower_accuracy_on_real_images(trained_lenet, fmnist_eval):
    """The briefly trained SNN is far above chance on real images and PGD at 8/255 takes a real bite out of it.

    (Measured: clean 46/64, FGSM 38/64, PGD-10 36-37/64 over random starts. At T = 2 the SNN loses far less than
    a briefly trained ANN twin does, so a drop of 0.2 or more is not to be expected here.)
    """
    x, y = fmnist_eval
    with torch.no_grad():
        clean = (trained_lenet(x).argmax(1) == y).float().mean().item()
        fgsm = (trained_lenet(FGSM(trained_lenet, EPS)(x, y)).argmax(1) == y).float().mean().item()
        x_pgd = PGD(trained_lenet, EPS, alpha=2 / 255, steps=10)(x, y)
        pgd = (trained_lenet(x_pgd).argmax(1) == y).float().mean().item()
    assert clean >= 0.6, f"clean accuracy {clean:.3f}: the trained LeNet should be far above chance (0.1)"
    assert fgsm < clean, "FGSM flipped no prediction of a model it has gradients for"
    assert pgd <= clean - 0.1, f"PGD at 8/255 barely hurt: clean {clean:.3f}, PGD {pgd:.3f}"
    assert pgd <= fgsm, f"PGD-10 ({pgd:.3f}) should do at least as well as FGSM ({fgsm:.3f})"


def test_targeted_pgd_raises_target_probability(trained_lenet, batch):
    x, y = batch
    target = (y + 1) % 10
    with torch.no_grad():
        before = trained_lenet(x).softmax(1).gather(1, target[:, None]).mean().item()
        x_adv = PGD(trained_lenet, EPS, alpha=2 / 255, steps=5, targeted=True)(x, target)
        after = trained_lenet(x_adv).softmax(1).gather(1, target[:, None]).mean().item()
    assert after > before


def test_eot_gradient_is_mean_of_draws_on_a_stochastic_model():
    model = TinyNet(1, 4, 3, noise=0.5)
    x = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0, 1])
    torch.manual_seed(7)
    batched = FGSM(model, EPS, eot=4).input_gradient(x, y)
    single = FGSM(model, EPS, eot=1)
    torch.manual_seed(7)  # the same draws, one per pass: the batched pass repeats the batch draw-major
    separate = torch.stack([single.input_gradient(x, y) for _ in range(4)]).mean(0)
    assert torch.allclose(batched, separate, atol=1e-6)
    torch.manual_seed(7)
    one_draw = single.input_gradient(x, y)
    assert not torch.allclose(batched, one_draw), "the noise should make draws differ"


def test_eot_draws_are_chunked_on_the_cpu_without_changing_the_gradient(monkeypatch):
    from spikeshield import decision

    assert decision.draws_per_pass(10, 16, torch.device("cpu")) == decision.CPU_IMAGES_PER_PASS // 16
    assert decision.draws_per_pass(10, 4096, torch.device("cpu")) == 1
    assert decision.draws_per_pass(10, 4096, torch.device("meta")) == 10  # accelerators: one pass
    model = TinyNet(1, 4, 3, noise=0.5)
    calls = []
    model.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    x = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0, 1])
    torch.manual_seed(7)
    one_pass = FGSM(model, EPS, eot=5).input_gradient(x, y)
    assert calls == [25]
    monkeypatch.setattr(decision, "CPU_IMAGES_PER_PASS", 10)  # 2 draws of 5 images per pass: 2 + 2 + 1
    calls.clear()
    torch.manual_seed(7)
    attack = FGSM(model, EPS, eot=5)
    chunked = attack.input_gradient(x, y)
    assert calls == [10, 10, 5] and attack.forward_passes == 25
    assert torch.allclose(one_pass, chunked, atol=1e-6)


def test_eot_on_a_deterministic_snn_equals_the_single_draw_gradient(trained_lenet, batch):
    x, y = batch
    one = FGSM(trained_lenet, EPS).input_gradient(x[:4], y[:4])
    attack = FGSM(trained_lenet, EPS, eot=3)
    three = attack.input_gradient(x[:4], y[:4])
    assert torch.allclose(one, three, rtol=1e-4, atol=1e-7)
    assert attack.forward_passes == 12
    assert torch.equal(attack.logits(x[:4]), trained_lenet(x[:4])) and attack.forward_passes == 16


def test_surrogate_argument_changes_the_gradient_only_inside_the_attack(trained_lenet, batch):
    x, y = batch[0][:4], batch[1][:4]
    own = FGSM(trained_lenet, EPS).input_gradient(x, y)
    triangle_attack = FGSM(trained_lenet, EPS, grad="triangle")
    with triangle_attack.gradient_context():
        triangle = triangle_attack.input_gradient(x, y)
    assert not torch.allclose(own, triangle)
    triangle_attack(x, y)
    after = FGSM(trained_lenet, EPS).input_gradient(x, y)
    assert torch.equal(after, own), "the surrogate swap leaked out of the attack"
    with gradient_mode("triangle"):  # an attack without grad= keeps an outer gradient mode
        assert torch.allclose(FGSM(trained_lenet, EPS).input_gradient(x, y), triangle)
    assert triangle_attack.settings()["grad"]["name"] == "triangle"


# --------------------------------------------------------------------------------------------- reproducibility
def test_random_attacks_are_reproducible_under_manual_seed(trained_lenet, batch):
    x, y = batch
    for attack in [RFGSM(trained_lenet, EPS), PGD(trained_lenet, EPS, steps=2, random_start=True)]:
        torch.manual_seed(3)
        a = attack(x, y)
        torch.manual_seed(3)
        b = attack(x, y)
        assert torch.equal(a, b), type(attack).__name__


def test_deterministic_attack_does_not_touch_the_global_rng(trained_lenet, batch):
    state = torch.get_rng_state()
    FGSM(trained_lenet, EPS)(*batch)
    BIM(trained_lenet, EPS, steps=1)(*batch)
    assert torch.equal(state, torch.get_rng_state())


# -------------------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("eps", [-0.1, 2.0, float("nan"), "big"])
def test_bad_eps_is_a_clear_error(trained_lenet, eps):
    for cls in [FGSM, RFGSM, BIM, PGD]:
        with pytest.raises(ValueError, match="eps"):
            cls(trained_lenet, eps=eps)


def test_bad_settings_are_clear_errors(trained_lenet):
    with pytest.raises(ValueError, match="eot"):
        FGSM(trained_lenet, EPS, eot=0)
    with pytest.raises(ValueError, match="steps"):
        PGD(trained_lenet, EPS, steps=0)
    with pytest.raises(ValueError, match="alpha"):
        PGD(trained_lenet, EPS, alpha=-1)
    with pytest.raises(ValueError, match="alpha"):
        RFGSM(trained_lenet, EPS, alpha=2 * EPS)
    with pytest.raises(ValueError, match="loss"):
        FGSM(trained_lenet, EPS, loss="nosuchloss")
    with pytest.raises(ValueError, match="surrogate"):
        FGSM(trained_lenet, EPS, grad="nosuchsurrogate")


def test_bad_images_and_labels_are_clear_errors(trained_lenet, batch):
    x, y = batch
    attack = FGSM(trained_lenet, EPS)
    with pytest.raises(ValueError, match="shape"):
        attack(x, y[:-1])
    with pytest.raises(ValueError, match="shape"):
        attack(x, y[:, None])
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        attack(x, torch.full_like(y, 10))
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        attack(x, torch.full_like(y, -1))
    with pytest.raises(ValueError, match="integer"):
        attack(x, y.float())
    with pytest.raises(ValueError, match="channel"):
        attack(torch.rand(2, 3, 28, 28), y[:2])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        attack(x * 3, y)
    with pytest.raises(ValueError, match="NaN"):
        attack(torch.full_like(x, float("nan")), y)


# ------------------------------------------------------------------------------------------------------ registry
def test_registry_names_and_settings(trained_lenet):
    assert set(ATTACKS) == {"fgsm", "rfgsm", "bim7", "pgd7", "pgd10", "pgd20", "pgd40", "mifgsm", "apgd-ce",
                            "apgd-dlr", "apgd-t", "gaussian", "cw-pgd", "cw", "square", "fab", "fab-t", "sapgd",
                            "sapgd-dlr"}
    assert make_attack("square", trained_lenet, EPS).n_queries == 5000
    fab_t = make_attack("fab-t", trained_lenet, EPS)
    assert (fab_t.name, fab_t.n_target_classes, fab_t.steps) == ("fab-t", 9, 100)
    pgd7 = make_attack("pgd7", trained_lenet, EPS)
    assert isinstance(pgd7, PGD) and (pgd7.steps, pgd7.alpha, pgd7.random_start) == (7, 0.01, True)
    assert make_attack("PGD-10", trained_lenet, EPS).alpha == pytest.approx(1.6 / 255)
    assert make_attack("pgd40", trained_lenet, EPS).steps == 40
    assert make_attack("bim7", trained_lenet, EPS).alpha == pytest.approx(EPS / 7)
    assert make_attack("rfgsm", trained_lenet, EPS).alpha == pytest.approx(EPS / 2)
    custom = make_attack("pgd7", trained_lenet, EPS, steps=3, eot=2, grad="triangle")
    assert (custom.steps, custom.eot, custom.name) == (3, 2, "pgd7")
    assert make_attack("fgsm", trained_lenet, EPS).name == "fgsm"


def test_registry_errors_list_the_valid_names(trained_lenet):
    with pytest.raises(ValueError, match="unknown attack 'pgd8'.*pgd7"):
        make_attack("pgd8", trained_lenet, EPS)
    with pytest.raises(ValueError, match="nosuchattack"):
        parse_attack_list("fgsm,nosuchattack")
    with pytest.raises(ValueError, match="bad settings"):
        make_attack("fgsm", trained_lenet, EPS, steps=3)
    with pytest.raises(ValueError, match="no attack"):
        parse_attack_list(" , ")


def test_parse_attack_list():
    assert parse_attack_list("fgsm, PGD7,pgd7,") == ["fgsm", "pgd7"]
    assert parse_attack_list(["bim7", "rfgsm"]) == ["bim7", "rfgsm"]


def test_poisson_snn_with_eot_gets_gradients_and_stays_in_ball(batch):
    model = create_model("lenet", dataset="fashion_mnist", T=2, encoder="poisson").eval()  # He init: it spikes
    assert model.is_stochastic
    x, y = batch[0][:4], batch[1][:4]
    attack = PGD(model, EPS, alpha=2 / 255, steps=2, eot=3)
    grad = attack.input_gradient(x, y)
    assert torch.isfinite(grad).all() and (grad.flatten(1).abs().sum(1) > 0).all()
    x_adv = attack(x, y)
    assert (x_adv - x).abs().max().item() <= EPS + 1e-6 and 0 <= x_adv.min() and x_adv.max() <= 1
    # 12 images per gradient (4 images x 3 draws) for the input gradient, each of the 2 steps and the final
    # iterate's loss, plus 10-draw confirmations of points the EOT-averaged logits call fooled
    assert attack.forward_passes >= 4 * 3 * 4 and (attack.forward_passes - 4 * 3 * 4) % attack.score_draws == 0
