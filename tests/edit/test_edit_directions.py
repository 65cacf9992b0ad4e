"""Edit directions: sentence files, automatic (caption + target), template banks, safetensors round trip."""

from __future__ import annotations

import pytest
import torch

from zerocon.edit.directions import (
    TEMPLATES,
    EditDirection,
    automatic_direction,
    automatic_sentences,
    direction_from_files,
    parse_target,
    read_sentences,
    swap_words,
    template_sentences,
)
from zerocon.errors import ZeroconError


def test_parse_target_word_swap_sentence_and_errors():
    r = parse_target("cat->dog")
    assert (r.source, r.target, r.is_word_swap) == ("cat", "dog", True)
    assert parse_target("cat → dog").target == "dog"
    r = parse_target("dog", source="cat")
    assert r.is_word_swap and r.source == "cat"
    r = parse_target("a photo of a dog wearing a hat")
    assert not r.is_word_swap and r.source is None
    for bad, message in [
        ("", "empty"),
        ("  ", "empty"),
        ("cat->cat", "identical"),
        ("->dog", "both sides"),
        ("a->b->c", "more than one arrow"),
    ]:
        with pytest.raises(ZeroconError, match=message):
            parse_target(bad)
    with pytest.raises(ZeroconError, match="identical"):
        parse_target("Dog", source="dog")
    with pytest.raises(ZeroconError, match="contradicts"):
        parse_target("cat->dog", source="horse")


def test_swap_words_whole_words_only():
    assert swap_words("a cat and a Cat on a catwalk", "cat", "dog") == "a dog and a dog on a catwalk"
    assert swap_words("a hot-dog stand", "dog", "cat") == "a hot-dog stand"


def test_automatic_sentences():
    caption = "a photography of a cat on the grass"
    plan = automatic_sentences(caption, parse_target("cat->dog"), use_templates=False)
    assert plan.source == [caption] and plan.target == ["a photography of a dog on the grass"]
    assert plan.kind == "word_swap"
    plan = automatic_sentences(caption, parse_target("cat->dog"), use_templates=True)
    assert len(plan.source) == len(plan.target) == 1 + len(TEMPLATES) and plan.kind == "word_swap+templates"
    plan = automatic_sentences(caption, parse_target("a watercolor of a cat"), use_templates=True)
    assert (plan.source, plan.target, plan.kind) == ([caption], ["a watercolor of a cat"], "sentence")
    with pytest.raises(ZeroconError, match="identical"):
        automatic_sentences(caption, parse_target(caption), True)


def test_word_missing_from_caption_never_switches_silently():
    # BLIP says "kitten" for "cat->dog": with templates allowed the direction is templates only, and says why
    plan = automatic_sentences("a photography of a kitten", parse_target("cat->dog"), use_templates=True)
    assert plan.source == template_sentences("cat") and plan.target == template_sentences("dog")
    assert (
        plan.kind == "templates" and "'cat' is not in the caption 'a photography of a kitten'" in plan.reason
    )
    # without templates the request is refused, naming the way out, instead of using templates anyway
    with pytest.raises(ZeroconError, match="not in the caption.*--no-templates"):
        automatic_sentences("a photography of a kitten", parse_target("cat->dog"), use_templates=False)


def test_direction_from_files_matches_mean_embedding_difference(tiny_pipe, tmp_path):
    (tmp_path / "src.txt").write_text("a photo of a cat\n\n a cat on the grass \n")
    (tmp_path / "tgt.txt").write_text("a photo of a dog\na dog on the grass\na small dog\n")
    assert read_sentences(tmp_path / "src.txt") == ["a photo of a cat", "a cat on the grass"]
    direction = direction_from_files(tiny_pipe, tmp_path / "src.txt", tmp_path / "tgt.txt")
    ids = tiny_pipe.tokenizer(
        ["a photo of a dog", "a dog on the grass", "a small dog"],
        padding="max_length",
        max_length=tiny_pipe.tokenizer.model_max_length,
        return_tensors="pt",
    ).input_ids
    with torch.no_grad():
        manual_target = tiny_pipe.text_encoder(ids)[0].mean(0, keepdim=True)
    assert torch.allclose(direction.target_embeds, manual_target, atol=1e-6)
    expected = tiny_pipe.construct_direction(
        tiny_pipe.get_embeds(["a photo of a cat", "a cat on the grass"]), manual_target
    )
    assert torch.allclose(direction.delta, expected, atol=1e-6)
    assert direction.delta.shape == (1, tiny_pipe.tokenizer.model_max_length, 32)
    assert direction.delta.abs().max() > 0


def test_bad_sentence_files(tmp_path):
    with pytest.raises(ZeroconError, match="not found"):
        read_sentences(tmp_path / "missing.txt")
    (tmp_path / "blank.txt").write_text("\n  \n")
    with pytest.raises(ZeroconError, match="no sentences"):
        read_sentences(tmp_path / "blank.txt")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ZeroconError, match="UTF-8"):
        read_sentences(tmp_path / "binary.txt")


def test_direction_safetensors_round_trip(tiny_pipe, tmp_path):
    direction = automatic_direction(tiny_pipe, "a photo of a cat", "cat->dog")
    path = tmp_path / "cat2dog.safetensors"
    direction.save(path)
    loaded = EditDirection.load(path)
    assert torch.equal(loaded.source_embeds, direction.source_embeds)
    assert torch.equal(loaded.target_embeds, direction.target_embeds)
    assert loaded.source_sentences == direction.source_sentences and loaded.kind == direction.kind
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(ZeroconError, match="not a safetensors"):
        EditDirection.load(tmp_path / "junk.safetensors")
    assert not list(tmp_path.glob(".*.tmp"))
