"""The CUT training step: losses, PatchNCE from zerocon.contrastive, determinism, exact resume."""

import math

import pytest
import torch
from cut_helpers import speed_module, tiny, toy_domains

import zerocon.contrastive as contrastive
import zerocon.cut.model as cut_model
from zerocon.cut.data import UnpairedDataset
from zerocon.cut.model import CUTModel, linear_decay_factor
from zerocon.training import StepContext, TrainConfig, Trainer


def _batch(seed=0, size=32, n=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1, torch.rand(
        n, 3, size, size, generator=g
    ) * 2 - 1


def _train(tmp_path, name, steps, cfg=None, seed=0, resume=False, run="run", total=None):
    """Train to ``steps`` of a run planned for ``total`` steps (the LR schedule); stopping early = interrupt."""
    a, b = toy_domains(tmp_path / "data")
    cfg = cfg or tiny(name)
    model = CUTModel(cfg, total_steps=total or steps, seed=seed)
    dataset = UnpairedDataset(a, b, cfg.size, cfg.resolved_load_size, cfg.flip)
    trainer = Trainer(
        model,
        dataset,
        tmp_path / run,
        TrainConfig(steps=steps, seed=seed, checkpoint_every=3, sample_every=4, log_every=1),
        progress=False,
    )
    if resume:
        trainer.resume()
    trainer.train()
    return model, trainer


def _state(model):
    return {f"{n}.{k}": v.clone() for n, net in model.networks().items() for k, v in net.state_dict().items()}


def test_heads_and_optimizers_exist_before_any_forward_pass():
    model = CUTModel(tiny())
    f_params = {id(p) for p in model.netF.parameters()}
    assert len(f_params) == 4 * 4  # 4 layers x (2 linear weights + 2 biases)
    assert f_params == {id(p) for g in model.optF.param_groups for p in g["params"]}
    assert model.optG.defaults["lr"] == 2e-4 and model.optG.defaults["betas"] == (0.5, 0.999)


def test_presets_set_the_paper_options():
    cut, fast, sin = tiny("cut"), tiny("fastcut"), tiny("sincut")
    assert (cut.lambda_nce, cut.nce_idt, cut.flip_equivariance) == (1.0, True, False)
    assert (fast.lambda_nce, fast.nce_idt, fast.flip_equivariance) == (10.0, False, True)
    assert (sin.num_patches, sin.negatives_from_minibatch, sin.lambda_nce, sin.gan_mode) == (
        16,
        True,
        4.0,
        "nonsaturating",
    )
    assert cut.gan_mode == fast.gan_mode == "lsgan" and cut.nce_temperature == 0.07


def test_learning_rate_is_constant_then_decays_linearly():
    factors = [linear_decay_factor(s, 100, 0.5) for s in range(101)]
    assert factors[:51] == [1.0] * 51
    assert factors[60] == pytest.approx(1 - 10 / 51) and factors[100] == pytest.approx(1 / 51)
    model = CUTModel(tiny(), total_steps=8)
    lrs = []
    for _ in range(8):
        lrs.append(model.optG.param_groups[0]["lr"])
        model.schedulers()["G"].step()
    assert lrs[:4] == [2e-4] * 4 and lrs[4] > lrs[5] > lrs[6] > lrs[7] > 0


def test_nce_loss_uses_the_shared_patchnce_and_matches_hand_computation(monkeypatch):
    calls = []
    original = contrastive.patch_nce_loss

    def spy(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    assert cut_model.patch_nce_loss is contrastive.patch_nce_loss
    monkeypatch.setattr(cut_model, "patch_nce_loss", spy)
    model = CUTModel(tiny(num_patches=5))
    q_feats = [torch.randn(1, c, 6, 6) for c in (3, 16, 32, 32)]
    k_feats = [torch.randn(1, c, 6, 6) for c in (3, 16, 32, 32)]
    loss = model.nce_loss(q_feats, k_feats, torch.Generator().manual_seed(3))
    assert len(calls) == 4
    # by hand: the same locations, the heads, normalisation, the softmax over 1 positive + 4 negatives
    g = torch.Generator().manual_seed(3)
    total = 0.0
    for head, q, k in zip(model.netF.heads, q_feats, k_feats):
        idx = contrastive.sample_locations(36, 5, g)
        qv = torch.nn.functional.normalize(head(q.flatten(2)[0].T[idx]), dim=1)
        kv = torch.nn.functional.normalize(head(k.flatten(2)[0].T[idx]), dim=1)
        layer = 0.0
        for i in range(5):
            pos = math.exp(float(qv[i] @ kv[i]) / 0.07)
            neg = sum(math.exp(float(qv[i] @ kv[j]) / 0.07) for j in range(5) if j != i)
            neg += math.exp(-10.0 / 0.07)  # the masked diagonal, as in the reference
            layer += -math.log(pos / (pos + neg))
        total += layer / 5
    assert float(loss) == pytest.approx(total / 4, rel=1e-5)


@pytest.mark.parametrize("name", ["cut", "fastcut"])
def test_gradients_equal_those_of_the_paper_code_order(name):
    """Reusing the generator pass's features as keys (our speed-up) does not change the maths."""
    speed = speed_module()
    batch = tuple(x.double() for x in _batch(1))  # float64: compare the maths, not float32 rounding
    grads = []
    for step_fn in ("ours", "reference"):
        model = CUTModel(tiny(name), seed=5)
        for net in model.networks().values():
            net.double()
        for opt in model.optimizers().values():  # stop before the update: inspect the gradients
            opt.step = lambda *a, **k: None
            opt.zero_grad = lambda *a, **k: None
        for seed in (0, 1):  # both flip outcomes for FastCUT
            ctx = speed.context(0, torch.Generator().manual_seed(seed))
            if step_fn == "ours":
                model.train_step(batch, ctx)
            else:
                speed.reference_order_step(model, batch, ctx)
        grads.append(
            {
                f"{n}.{k}": p.grad.clone()
                for n, net in model.networks().items()
                for k, p in net.named_parameters()
            }
        )
    assert grads[0].keys() == grads[1].keys()
    for key in grads[0]:
        # relative to the largest gradient of the network: conv biases before instance norm have a true
        # gradient of zero and carry only rounding noise
        scale = max(float(v.abs().max()) for k, v in grads[0].items() if k[0] == key[0])
        assert (grads[0][key] - grads[1][key]).abs().max() <= 1e-5 * scale, key


@pytest.mark.parametrize("name", ["cut", "fastcut", "sincut"])
def test_losses_finite_and_decreasing_on_a_toy_pair(name, tmp_path):
    cfg = tiny(name, num_patches=8 if name != "sincut" else 1)
    model = CUTModel(cfg, total_steps=40, seed=0)
    batch = _batch(2, n=2 if name == "sincut" else 1)
    speed = speed_module()
    history = [model.train_step(batch, speed.context(s, torch.Generator().manual_seed(s))) for s in range(40)]
    for record in history:
        assert all(math.isfinite(v) for v in record.values())
    # on a fixed pair the generator quickly makes its output contrastively match its input
    if name != "sincut":  # SinCUT's NCE has 1 patch per layer and 1 negative here: it cannot fall far
        assert sum(h["NCE"] for h in history[-5:]) < 0.8 * sum(h["NCE"] for h in history[:5])
    assert sum(h["D_real"] + h["D_fake"] for h in history[-5:]) < sum(
        h["D_real"] + h["D_fake"] for h in history[:5]
    )
    if name == "sincut":
        assert "D_R1" in history[0] and "idt" in history[0]


def test_same_seed_same_weights_other_seed_other_weights(tmp_path):
    a, _ = _train(tmp_path, "cut", 3, run="a")
    b, _ = _train(tmp_path, "cut", 3, run="b")
    c, _ = _train(tmp_path, "cut", 3, seed=1, run="c")
    sa, sb, sc = _state(a), _state(b), _state(c)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["G.model.1.weight"], sc["G.model.1.weight"])


@pytest.mark.parametrize("name", ["cut", "fastcut"])
def test_interrupted_and_resumed_equals_uninterrupted_bit_for_bit(name, tmp_path):
    full, _ = _train(tmp_path, name, 7, run="full")
    _train(tmp_path, name, 3, run="part", total=7)  # a 7-step run interrupted after its step-3 checkpoint
    resumed, trainer = _train(tmp_path, name, 7, resume=True, run="part")
    assert trainer.step == 7
    s_full, s_res = _state(full), _state(resumed)
    assert all(torch.equal(s_full[k], s_res[k]) for k in s_full)
    for key, opt in full.optimizers().items():
        a = opt.state_dict()["state"]
        b = resumed.optimizers()[key].state_dict()["state"]
        assert all(torch.equal(a[i]["exp_avg"], b[i]["exp_avg"]) for i in a)
    assert full.optG.param_groups[0]["lr"] == resumed.optG.param_groups[0]["lr"]


def test_step_returns_every_loss_term_and_backpropagates_through_the_context():
    """The losses a CUT step reports are the ones it checks and back-propagates through its StepContext:
    D = (D_real + D_fake) / 2 and G = G_GAN + (NCE + NCE_Y) / 2, each named, and every optimizer steps."""

    class Accelerator:
        device = torch.device("cpu")
        num_processes = 1

        def __init__(self):
            self.backward_values = []

        def backward(self, loss):
            self.backward_values.append(float(loss.detach()))
            loss.backward()

    class Trainer:
        def __init__(self):
            self.checked = []

        def check_finite(self, losses, step):
            self.checked.extend((name, float(value.detach()), step) for name, value in losses.items())

    model = CUTModel(tiny("cut"))
    before = _state(model)
    accelerator, trainer = Accelerator(), Trainer()
    ctx = StepContext(
        step=4, generator=torch.Generator().manual_seed(0), accelerator=accelerator, trainer=trainer
    )
    stepped = []

    def recording(opt):
        step = opt.step

        def wrapped(*args, **kwargs):
            stepped.append(opt)
            return step(*args, **kwargs)

        return wrapped

    for opt in model.optimizers().values():
        opt.step = recording(opt)
    out = model.train_step(_batch(), ctx)
    assert set(out) == {"D_real", "D_fake", "G_GAN", "NCE", "NCE_Y"}
    assert all(isinstance(v, float) and math.isfinite(v) for v in out.values())
    assert [(name, step) for name, _, step in trainer.checked] == [("D", 4), ("G", 4)]
    loss_d, loss_g = (value for _, value, _ in trainer.checked)
    assert accelerator.backward_values == [loss_d, loss_g]
    assert loss_d == pytest.approx(0.5 * (out["D_real"] + out["D_fake"]), rel=1e-6)
    assert loss_g == pytest.approx(out["G_GAN"] + 0.5 * (out["NCE"] + out["NCE_Y"]), rel=1e-6)
    assert stepped == [model.optD, model.optG, model.optF]
    after = _state(model)
    for net in ("G", "D", "F"):  # every network was updated by its optimizer
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(net + ".")), net


def test_nce_gradient_of_one_image_equals_its_gradient_inside_a_batch():
    """Guards against torch 2.13's wrong CPU instance_norm backward for channels-last-strided gradients at
    batch 1, which PatchNCE's patch gathering used to trigger (the reference code's gathering does)."""
    model = CUTModel(tiny("fastcut"), seed=3)
    for net in model.networks().values():
        net.double()
    g = model.netG
    a, b = (x.double() for x in _batch(4, n=2))
    keys = [k.detach() for k in g.encode(a[:1], model.cfg.nce_layers)]
    grads = []
    for inputs in (a[:1], a):
        g.zero_grad()
        queries = [q[:1] for q in g.encode(inputs * 0.5, model.cfg.nce_layers)]
        model.nce_loss(queries, keys, torch.Generator().manual_seed(0)).backward()
        grads.append([p.grad.clone() for p in g.parameters() if p.grad is not None])
    for one, batched in zip(*grads):
        assert (one - batched).abs().max() <= 1e-6 * one.abs().max().clamp_min(1e-3)
