"""Pretrained networks load strictly: a checkpoint with weights missing or left over is a one-line error that
names them (zerocon.pretrained), for every metric network and for the captioner."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_metric_nets import save_lpips_backbone, save_tiny_clipseg, seeded_backbone_state

from zerocon.errors import ZeroconError
from zerocon.metrics.clip import ClipEmbedder
from zerocon.metrics.lpips import load_lpips, shipped_heads_path
from zerocon.metrics.masks import ClipSegSegmenter
from zerocon.metrics.structure import DinoKeyExtractor
from zerocon.pretrained import SHOWN_KEYS, weights_mismatch_error

WEIGHTS = "model.safetensors"


def _copy(folder: Path, tmp_path: Path) -> Path:
    """A private copy of a (session-wide) saved model folder, safe to damage."""
    return Path(shutil.copytree(folder, tmp_path / folder.name))


def _drop_layer(folder: Path, layer: str) -> list[str]:
    """Remove every tensor of ``layer`` (a key prefix) from the folder's safetensors file; the removed keys."""
    path = folder / WEIGHTS
    state = load_file(str(path))
    removed = sorted(k for k in state if k.startswith(layer + "."))
    assert removed, f"no tensors under {layer} in {sorted(state)[:5]}"
    save_file({k: v for k, v in state.items() if k not in removed}, str(path), metadata={"format": "pt"})
    return removed


def _add_tensor(folder: Path, key: str) -> None:
    path = folder / WEIGHTS
    state = load_file(str(path))
    state[key] = torch.zeros(3)
    save_file(state, str(path), metadata={"format": "pt"})


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# loader, option, the layer removed from the file, and its name in the model (transformers 5 renames the
# ViT's legacy checkpoint keys as it loads them, and reports the model's names)
CASES = {
    "clip": (
        ClipEmbedder.from_pretrained,
        "--clip",
        "vision_model.encoder.layers.1.mlp.fc1",
        "vision_model.encoder.layers.1.mlp.fc1",
    ),
    "dino": (
        DinoKeyExtractor.from_pretrained,
        "--dino",
        "encoder.layer.1.attention.attention.key",
        "layers.1.attention.k_proj",
    ),
    "clipseg": (
        ClipSegSegmenter.from_pretrained,
        "--segmenter",
        "decoder.layers.0.mlp.fc2",
        "decoder.layers.0.mlp.fc2",
    ),
}


@pytest.fixture(scope="module")
def clipseg_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_clipseg(tmp_path_factory.mktemp("clipseg"))


def _source(name: str, tiny_nets: dict[str, Path], clipseg_dir: Path) -> Path:
    return clipseg_dir if name == "clipseg" else tiny_nets[name]


@pytest.mark.parametrize("name", sorted(CASES))
def test_missing_layer_names_the_model_and_the_keys(name, tiny_nets, clipseg_dir, tmp_path):
    loader, option, layer, in_model = CASES[name]
    folder = _copy(_source(name, tiny_nets, clipseg_dir), tmp_path)
    assert len(_drop_layer(folder, layer)) == 2  # the layer's weight and bias
    with pytest.raises(ZeroconError) as error:
        loader(str(folder))
    message = _one_line(error)
    assert message.startswith(f"{option} {folder}") and "missing 2" in message, message
    assert f"{in_model}.bias, {in_model}.weight" in message, message


@pytest.mark.parametrize("name", sorted(CASES))
def test_unexpected_weight_names_the_key(name, tiny_nets, clipseg_dir, tmp_path):
    loader, option, _, _ = CASES[name]
    folder = _copy(_source(name, tiny_nets, clipseg_dir), tmp_path)
    _add_tensor(folder, "extra_head.weight")
    with pytest.raises(ZeroconError, match=r"unexpected 1: extra_head\.weight") as error:
        loader(str(folder))
    assert _one_line(error).startswith(option)


def test_intact_networks_still_load(tiny_nets, clipseg_dir):
    """The check has no false alarms: the saved tiny networks load (DINO without a pooler, as DINO's own)."""
    ClipEmbedder.from_pretrained(str(tiny_nets["clip"]))
    DinoKeyExtractor.from_pretrained(str(tiny_nets["dino"]))
    ClipSegSegmenter.from_pretrained(str(clipseg_dir))


def test_lpips_backbone_missing_and_unexpected_weights(tmp_path):
    state = seeded_backbone_state("alex")
    del state["features.3.weight"], state["features.3.bias"]
    missing = tmp_path / "missing.safetensors"
    save_file(state, str(missing))
    with pytest.raises(ZeroconError) as error:
        load_lpips(missing)
    message = _one_line(error)
    assert (
        message.startswith(f"--lpips-backbone {missing}") and "features.3.bias, features.3.weight" in message
    )
    state = seeded_backbone_state("alex")
    state["features.13.weight"] = torch.zeros(2)
    extra = tmp_path / "extra.safetensors"
    save_file(state, str(extra))
    with pytest.raises(ZeroconError, match=r"unexpected 1: features\.13\.weight"):
        load_lpips(extra)


def test_lpips_heads_must_match_exactly(tmp_path):
    shipped = shipped_heads_path("alex")
    if shipped is None:
        pytest.skip("torchmetrics (which ships the LPIPS heads) is not installed")
    heads = torch.load(shipped, map_location="cpu", weights_only=True)
    backbone = save_lpips_backbone(tmp_path)
    path = tmp_path / "heads.pth"
    torch.save({k: v for k, v in heads.items() if k != "lin4.model.1.weight"}, path)
    with pytest.raises(ZeroconError, match=r"--lpips-heads .*missing 1: lin4\.model\.1\.weight"):
        load_lpips(backbone, heads=path)
    torch.save({**heads, "lin5.model.1.weight": torch.zeros(1, 8, 1, 1)}, path)
    with pytest.raises(ZeroconError, match=r"unexpected 1: lin5\.model\.1\.weight"):
        load_lpips(backbone, heads=path)
    torch.save(heads, path)
    load_lpips(backbone, heads=path)  # the shipped heads themselves fit


def test_captioner_with_a_missing_layer_is_refused(tmp_path):
    from module_files import ROOT, load_module_file

    from zerocon.edit.captioning import load_captioner

    tiny = load_module_file(ROOT / "tests" / "edit" / "tiny.py", "_zerocon_edit_tiny_for_strict")
    model, processor = tiny.tiny_blip(tmp_path / "parts")
    folder = tmp_path / "blip"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    load_captioner(str(folder))  # intact: loads
    removed = _drop_layer(folder, "text_decoder.bert.encoder.layer.1.crossattention.self.query")
    with pytest.raises(ZeroconError) as error:
        load_captioner(str(folder))
    message = _one_line(error)
    assert message.startswith(f"--captioner {folder}") and all(k in message for k in removed), message


def test_mismatch_message_lists_a_few_keys_on_one_line():
    missing = [f"layer.{i}.weight" for i in range(10)]
    error = weights_mismatch_error(
        "--clip X (CLIP)", "CLIPModel", missing=missing, mismatched=[("a.b", (2,), (3,))]
    )
    message = str(error)
    assert "\n" not in message and message.startswith(
        "--clip X (CLIP): the checkpoint does not match CLIPModel"
    )
    assert "missing 10: layer.0.weight, layer.1.weight, layer.2.weight, …" in message
    assert "wrong shape 1: a.b" in message
    assert sum(k in message for k in missing) == SHOWN_KEYS
    assert weights_mismatch_error("x", "Model") is None
