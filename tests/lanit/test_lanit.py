"""LANIT: labels, prompts, losses, a tiny training run, resume, translation and the CLI (CPU, tiny sizes)."""

import json
from dataclasses import asdict, replace

import pytest
import torch
from lanit_helpers import DOMAINS, tiny_config, tiny_trainer
from PIL import Image

from zerocon.errors import ZeroconError
from zerocon.lanit import losses as L
from zerocon.lanit.labels import LabelConfig, adaptive_threshold, handle_empty, pseudo_labels
from zerocon.lanit.model import LanitConfig, LanitMethod, make_config
from zerocon.lanit.networks import NetworkConfig, build_networks
from zerocon.lanit.prompts import PromptLearner, base_prompt, encode_images, load_clip, resolve_templates
from zerocon.training import moving_average


# -- pseudo-labels -------------------------------------------------------------------------------------
def test_adaptive_threshold_hand_made_table():
    sim = torch.tensor(
        [
            [0.30, 0.10, 0.25, 0.05],  # base .20 -> red, circle
            [0.10, 0.12, 0.11, 0.13],  # base .50 -> nothing
            [0.40, 0.41, 0.42, 0.43],  # base .00 -> all four
            [0.20, 0.20, 0.21, 0.19],  # base .20 -> only circle (strictly greater)
        ]
    )
    base = torch.tensor([0.20, 0.50, 0.00, 0.20])
    expected = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1], [0, 0, 1, 0]], dtype=torch.float)
    assert torch.equal(adaptive_threshold(sim, base), expected)
    top2 = adaptive_threshold(sim, base, top_k=2)
    assert torch.equal(top2[2], torch.tensor([0.0, 0.0, 1.0, 1.0]))  # the two most similar of four
    assert torch.equal(top2[[0, 1, 3]], expected[[0, 1, 3]])  # never turns on a domain below the base

    labels, valid = handle_empty(expected, "skip")
    assert torch.equal(labels, expected) and valid.tolist() == [True, False, True, True]
    slack, valid = handle_empty(expected, "slack")
    assert slack.shape == (4, 5) and slack[:, 4].tolist() == [0, 1, 0, 0] and bool(valid.all())


def test_pseudo_labels_from_features_use_the_base_prompt():
    # image features on the unit circle; domain 0 at angle 0, domain 1 at 90 deg, base at 45 deg
    angle = torch.tensor([0.1, 1.4, 0.78])
    feats = torch.stack([angle.cos(), angle.sin()], 1)
    domain = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    base = torch.tensor([0.7071, 0.7071])
    labels, valid = pseudo_labels(feats, domain, base, LabelConfig())
    assert labels.tolist() == [[1, 0], [0, 1], [0, 0]] and valid.tolist() == [True, True, False]
    with pytest.raises(ValueError):
        LabelConfig(empty="drop")


def test_templates_and_base_prompts():
    assert base_prompt("a photo of a {}.") == "a photo of a."
    assert base_prompt("a {} on a background") == "a on a background"
    assert base_prompt("{}") == ""
    assert resolve_templates("a {} x|the {}") == ("a {} x", "the {}")
    with pytest.raises(ZeroconError, match="exactly once"):
        resolve_templates("a {} {}")
    with pytest.raises(ZeroconError, match="unknown template preset"):
        resolve_templates("nonsense")


# -- CLIP and prompts ----------------------------------------------------------------------------------
def test_tiny_clip_round_trip_and_missing_weights(tiny_clip_dir, tiny_clip, tmp_path):
    from transformers import CLIPModel

    again = CLIPModel.from_pretrained(tiny_clip_dir)
    x = torch.rand(2, 3, 40, 40) * 2 - 1
    first = encode_images(tiny_clip, x)
    assert first.shape == (2, 16) and torch.allclose(first.norm(dim=-1), torch.ones(2))
    from zerocon.lanit.prompts import from_model

    assert torch.allclose(first, encode_images(from_model(again, tiny_clip.tokenizer), x), atol=1e-6)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text(json.dumps(again.config.to_dict()))
    with pytest.raises(ZeroconError, match="cannot load model"):
        load_clip(str(tmp_path / "broken"))
    assert tiny_clip.mean == (0.48145466, 0.4578275, 0.40821073)  # no processor saved: CLIP's constants


def test_clip_normalisation_comes_from_a_saved_processor(tiny_clip_dir, tmp_path):
    import shutil

    from transformers import CLIPImageProcessor, CLIPProcessor, CLIPTokenizer

    folder = tmp_path / "with_processor"
    shutil.copytree(tiny_clip_dir, folder)
    tok = CLIPTokenizer.from_pretrained(folder)
    image_processor = CLIPImageProcessor(image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    CLIPProcessor(image_processor=image_processor, tokenizer=tok).save_pretrained(folder)
    bundle = load_clip(str(folder))
    assert bundle.mean == (0.5, 0.5, 0.5) and bundle.std == (0.5, 0.5, 0.5)


def test_prompt_context_starts_at_the_template_word_embeddings(tiny_clip):
    prompts = PromptLearner(tiny_clip, ["a photo of the {}.", "a {} on a background"], DOMAINS)
    tok = tiny_clip.tokenizer
    table = tiny_clip.model.text_model.embeddings.token_embedding.weight
    ids = tok("a photo of the", add_special_tokens=False).input_ids
    assert torch.equal(prompts.context[0].data, table[ids])
    assert [p.shape[0] for p in prompts.context] == [4, 1]
    # with the initial context, the learner equals plain CLIP text features of the filled templates
    domain, base = prompts(tiny_clip)
    enc = tok(["a photo of the red.", "a red on a background"], padding=True, return_tensors="pt")
    with torch.no_grad():
        out = tiny_clip.model.get_text_features(**enc)
    plain = torch.nn.functional.normalize(getattr(out, "pooler_output", out), dim=-1)
    assert torch.allclose(domain[0], torch.nn.functional.normalize(plain.mean(0), dim=-1), atol=1e-5)
    # gradients reach the context, not the class words (which are not parameters)
    (domain[1] @ base).backward()
    assert prompts.context[0].grad is not None and prompts.context[0].grad.abs().sum() > 0
    assert [n for n, _ in prompts.named_parameters()] == ["context.0", "context.1"]


# -- losses --------------------------------------------------------------------------------------------
def test_losses_are_finite_and_behave():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
    y = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    expected = (bce(torch.tensor(2.0), torch.tensor(1.0)) + bce(torch.tensor(0.5), torch.tensor(1.0))
                + bce(torch.tensor(3.0), torch.tensor(1.0))) / 3  # fmt: skip
    assert L.adversarial_loss(logits, y, 1.0) == pytest.approx(float(expected))
    assert float(L.adversarial_loss(logits, torch.zeros_like(y), 1.0)) == 0.0
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    w = torch.randn(3, 3 * 64)
    r1 = L.r1_penalty(x.flatten(1) @ w.T, y, x)
    grad = torch.stack([(w * y[i][:, None]).sum(0) for i in range(2)])
    assert float(r1) == pytest.approx(float(0.5 * grad.pow(2).sum(1).mean()), rel=1e-5)
    assert L.diversity_weight(0, 1.0, 100) == 1.0 and L.diversity_weight(50, 1.0, 100) == 0.5
    assert L.diversity_weight(150, 1.0, 100) == 0.0


def test_flip_one_active_turns_off_exactly_one_active_domain():
    y = torch.tensor([[1.0, 0, 1, 1], [0, 1, 0, 0], [0, 0, 0, 0]])
    flipped, k = L.flip_one_active(y, torch.Generator().manual_seed(0))
    assert k[2] == -1 and torch.equal(flipped[2], y[2])
    for row in range(2):
        assert y[row, k[row]] == 1 and flipped[row, k[row]] == 0
        assert (y[row] - flipped[row]).sum() == 1
    seen = {int(L.flip_one_active(y, torch.Generator().manual_seed(s))[1][0]) for s in range(30)}
    assert seen == {0, 2, 3}  # uniformly among the active ones


def test_domain_regularization_loss_definition():
    p_on = torch.tensor([[0.9, 0.2], [0.5, 0.5]])
    p_off = torch.tensor([[0.1, 0.7], [0.5, 0.4]])
    k = torch.tensor([0, -1])
    loss = L.domain_regularization_loss(p_on, p_off, k)
    assert float(loss) == pytest.approx(
        -torch.log(torch.tensor(0.9)).item() - torch.log(torch.tensor(0.9)).item(), rel=1e-4
    )
    assert float(L.domain_regularization_loss(p_on, p_off, torch.tensor([-1, -1]))) == 0.0


# -- the method ----------------------------------------------------------------------------------------
@pytest.fixture
def permissive(monkeypatch):
    """Labels that keep every row (random tiny CLIP would skip many): every domain whose sim beats the mean."""
    import zerocon.lanit.model as model

    def labels(feats, domain, base, cfg):
        sim = feats @ domain.T
        on = (sim >= sim.mean(1, keepdim=True)).float()
        return handle_empty(on, cfg.empty)

    monkeypatch.setattr(model, "pseudo_labels", labels)


def test_steps_change_generator_and_prompts_with_finite_losses(tiny_clip, tmp_path, permissive):
    method = LanitMethod(tiny_config(), clip=tiny_clip)
    g0 = {k: v.clone() for k, v in method.generator.state_dict().items()}
    p0 = [p.detach().clone() for p in method.prompts.context]
    e0 = [p.detach().clone() for p in method.generator_ema.parameters()]
    trainer = tiny_trainer(method, tmp_path / "run", 2)
    losses = trainer.train()
    for key in ("d_latent", "d_ref", "g_latent", "g_ref", "g_adv", "g_sty", "g_ds", "g_cyc", "g_dr", "d_r1"):
        assert key in losses and torch.isfinite(torch.tensor(losses[key])), key
    assert any(not torch.equal(v, method.generator.state_dict()[k]) for k, v in g0.items())
    assert any(not torch.equal(a, b) for a, b in zip(p0, method.prompts.context))
    assert any(not torch.equal(a, b) for a, b in zip(e0, method.generator_ema.parameters()))
    assert (tmp_path / "run" / "samples" / "step_000002.png").is_file()


def test_prompts_frozen_before_prompt_start(tiny_clip, tmp_path, permissive):
    method = LanitMethod(tiny_config(prompt_start=100, reference_pass=False), clip=tiny_clip)
    p0 = [p.detach().clone() for p in method.prompts.context]
    losses = tiny_trainer(method, tmp_path / "run", 2).train()
    assert "g_dr" not in losses and "g_ref" not in losses and "g_latent" in losses
    assert all(torch.equal(a, b) for a, b in zip(p0, method.prompts.context))


def test_domain_regularization_translates_again_with_the_flipped_label(tiny_clip, permissive):
    method = LanitMethod(tiny_config(), clip=tiny_clip)
    calls = []
    original = method.mapping.forward

    def spy(z, y):
        calls.append(y.detach().clone())
        return original(z, y)

    method.mapping.forward = spy
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    z = torch.randn(3, 16)
    y_trg = torch.tensor([[1.0, 0, 1, 0], [0, 1, 0, 1], [1, 1, 1, 0]])
    gen = torch.Generator().manual_seed(3)
    loss = method.domain_regularization(method.generator(x, original(z, y_trg)), z, y_trg, gen)
    assert torch.isfinite(loss) and len(calls) == 1
    used = calls[0]
    expected, k = L.flip_one_active(y_trg, torch.Generator().manual_seed(3))
    assert torch.equal(used, expected)  # the flipped label d_inv, not y_trg (the reference code's slip)
    assert not torch.equal(used, y_trg) and ((y_trg - used).sum(1) == 1).all()
    # with the slack domain, a row emptied by the flip falls into the slack domain
    slack = LanitMethod(tiny_config(empty="slack"), clip=tiny_clip)
    y = torch.tensor([[1.0, 0, 0, 0, 0], [0, 1, 1, 0, 0]])
    flipped, k = slack.flip_for_regularization(y, torch.Generator().manual_seed(0))
    assert flipped[0].tolist() == [0, 0, 0, 0, 1] and flipped[1, 4] == 0 and flipped[1].sum() == 1


def test_resume_equals_uninterrupted_run(tiny_clip, tmp_path, permissive):
    full = LanitMethod(tiny_config(prompt_start=2), clip=tiny_clip)
    tiny_trainer(full, tmp_path / "full", 4).train()
    part = LanitMethod(tiny_config(prompt_start=2), clip=tiny_clip)
    tiny_trainer(part, tmp_path / "part", 2).train()
    resumed = LanitMethod(tiny_config(prompt_start=2), clip=tiny_clip)
    trainer = tiny_trainer(resumed, tmp_path / "part", 4)
    assert trainer.resume() == 2
    trainer.train()
    for name, net in full.networks().items():
        other = resumed.networks()[name].state_dict()
        for key, value in net.state_dict().items():
            assert torch.equal(value, other[key]), f"{name}.{key}"


def test_translator_and_cli(tiny_clip, tiny_clip_dir, tmp_path, permissive):
    from zerocon.cli import main
    from zerocon.lanit.translate import Translator

    method = LanitMethod(tiny_config(clip=str(tiny_clip_dir), empty="slack"), clip=tiny_clip)
    tiny_trainer(method, tmp_path / "run", 1).train()
    translator = Translator.from_checkpoint(tmp_path / "run")
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    out = translator.latent(x, ["red", "square"], samples=3, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 3, 16, 16) and not torch.allclose(out[:, 0], out[:, 1])
    ref = translator.reference(x, x[:1], ["blue"])
    assert ref.shape == (2, 3, 16, 16) and bool(torch.isfinite(ref).all())
    assert torch.equal(ref, translator.reference(x, x[:1], ["blue"]))  # no randomness in reference mode
    # the output follows the reference's style: another reference image, or other domain words, change it
    assert (ref - translator.reference(x, x[1:], ["blue"])).abs().mean() > 1e-2
    assert (ref - translator.reference(x, x[:1], ["red", "square"])).abs().mean() > 1e-2
    # one style for the whole batch: each image is translated as it would be alone
    torch.testing.assert_close(ref[1:], translator.reference(x[1:], x[:1], ["blue"]), rtol=1e-5, atol=1e-5)
    labels = translator.reference_labels(x)  # CLIP + the run's EMA prompts
    assert labels.shape == (2, 5) and bool((labels.sum(1) >= 1).all())
    assert set(labels.flatten().tolist()) <= {0.0, 1.0}
    assert all(translator.words_of(row) for row in labels)
    image = tmp_path / "in.png"
    Image.new("RGB", (40, 40), (200, 30, 30)).save(image)
    assert main(["lanit", "translate", "--checkpoint", str(tmp_path / "run"), str(image), "--to", "blue,circle",
                 "--samples", "2", "--out", str(tmp_path / "out")]) == 0  # fmt: skip
    # input + 2 samples of 16 px under a 14-px header
    assert Image.open(tmp_path / "out" / "in_to_blue-circle.png").size == (48, 30)
    assert main(["lanit", "translate", "--checkpoint", str(tmp_path / "run"), str(image), "--to", "dog",
                 "--out", str(tmp_path / "out")]) == 2  # fmt: skip
    assert main(["lanit", "translate", "--checkpoint", str(tmp_path / "run"), str(image), "--reference",
                 str(image), "--ref-domains", "red", "--out", str(tmp_path / "out")]) == 0  # fmt: skip


def test_networks_shapes_and_ema():
    cfg = NetworkConfig(img_size=32, num_domains=3, base_dim=8, max_conv_dim=16, mapping_dim=16, style_dim=8)
    nets = build_networks(cfg, seed=1)
    x = torch.randn(2, 3, 32, 32)
    y = torch.tensor([[1.0, 0, 1], [0, 1, 0]])
    s = nets.mapping(torch.randn(2, 16), y)
    assert s.shape == (2, 8) and nets.generator(x, s).shape == x.shape
    assert nets.discriminator(x).shape == (2, 3) and nets.style_encoder(x, y).shape == (2, 8)
    # the aggregated style is the mean of the per-domain styles
    z = torch.randn(1, 16)
    both = nets.mapping(z, torch.tensor([[1.0, 0, 1]]))
    one, three = nets.mapping(z, torch.tensor([[1.0, 0, 0]])), nets.mapping(z, torch.tensor([[0.0, 0, 1]]))
    assert torch.allclose(both, (one + three) / 2, atol=1e-6)
    with torch.no_grad():
        for p in nets.generator.parameters():
            p.add_(1.0)
    before = next(nets.generator_ema.parameters()).clone()
    moving_average(nets.generator, nets.generator_ema, beta=0.9)
    after = next(nets.generator_ema.parameters())
    assert torch.allclose(after, before + 0.1, atol=1e-6)
    with pytest.raises(ValueError):
        NetworkConfig(img_size=48)


def test_output_norm_option_and_the_shapes_preset():
    cfg = NetworkConfig(img_size=32, num_domains=3, base_dim=8, max_conv_dim=16, mapping_dim=16, style_dim=8)
    assert isinstance(build_networks(cfg, seed=1).generator.to_rgb[0], torch.nn.InstanceNorm2d)
    plain = build_networks(replace(cfg, output_norm=False), seed=1).generator
    assert isinstance(plain.to_rgb[0], torch.nn.Identity)
    assert plain(torch.randn(2, 3, 32, 32), torch.randn(2, 8)).shape == (2, 3, 32, 32)
    shapes = make_config("shapes", domains=list(DOMAINS))
    assert shapes.network_config().output_norm is False
    assert make_config("default", domains=list(DOMAINS)).network_config().output_norm is True
    # a checkpoint config written before the option existed rebuilds StarGAN v2's generator
    saved = asdict(shapes)
    del saved["output_norm"]
    assert LanitConfig.from_dict(saved).output_norm is True


def test_train_cli_runs_resumes_and_refuses_other_domains(tiny_clip_dir, tmp_path):
    from zerocon.cli import main
    from zerocon.io import load_checkpoint

    data = tmp_path / "data"
    data.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(4):
        pixels = (torch.rand(20, 20, 3, generator=g) * 255).byte().numpy()
        Image.fromarray(pixels).resize((40, 40)).save(data / f"{i}.png")
    (data / "broken.png").write_bytes(b"not an image")
    base = ["lanit", "train", "--data", str(data), "--domains", "red,blue,circle", "--preset", "shapes",
            "--img-size", "16", "--clip", str(tiny_clip_dir), "--template", "a photo of the {}.",
            "--batch-size", "2", "--out", str(tmp_path / "run"), "--no-progress", "--prompt-start", "1", "--lambda-cyc", "10"]  # fmt: skip
    assert main([*base, "--steps", "2"]) == 0
    assert main([*base, "--steps", "2"]) == 2  # the run exists: needs --resume
    assert main([*base, "--steps", "3", "--resume"]) == 0
    _, config = load_checkpoint(tmp_path / "run" / "checkpoint")
    assert config["step"] == 3 and config["method"]["domains"] == ["red", "blue", "circle"]
    assert config["method"]["empty"] == "slack" and config["method"]["top_k"] == 2
    assert config["method"]["lambda_cyc"] == 10.0
    other = [a if a != "red,blue,circle" else "red,blue" for a in base]
    assert main([*other, "--steps", "4", "--resume"]) == 2
