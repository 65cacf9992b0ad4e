"""Fuzzing the command line: mutated image files and hostile arguments end in a clean exit, never a traceback.

``zerocon.cli.main`` is called in-process (fast), so any exception other than a handled
:class:`~zerocon.errors.ZeroconError` (exit 2) or argparse's usage error (``SystemExit(2)``) fails the test.
Inputs are real images mutated by the image fuzzer's strategy, random bytes and odd file names, translated
by a tiny CUT generator saved as a real checkpoint; argument fuzzing covers every sub-command's validation.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from test_fuzz_images import described_image_bytes, reference_size

from zerocon.cli import main

FUZZ = settings(
    max_examples=int(os.environ.get("ZEROCON_FUZZ_EXAMPLES", "25")),
    deadline=None,  # the first call imports the heavy libraries; the example count bounds the time
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
    derandomize=True,
)


@pytest.fixture(scope="module")
def cut_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real CUT checkpoint (tiny random generator) written with the project's checkpoint format."""
    from zerocon.cut.config import preset
    from zerocon.cut.networks import ResnetGenerator
    from zerocon.io import save_checkpoint

    cfg = preset("cut", size=32, ngf=4, ndf=4, n_blocks=1, num_patches=16)
    torch.manual_seed(0)
    generator = ResnetGenerator(ngf=cfg.ngf, n_blocks=cfg.n_blocks)
    run = tmp_path_factory.mktemp("cut_run")
    networks = {f"G.{k}": v for k, v in generator.state_dict().items()}
    save_checkpoint(run / "checkpoint", {"networks": networks}, {"method": cfg.to_dict(), "step": 0})
    return run


def _run(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code if isinstance(exc.code, int) else 2
    return code, capsys.readouterr().err


@FUZZ
@given(
    made=described_image_bytes(), suffix=st.sampled_from([".png", ".jpg", ".webp", ".gif", ".tif", ".bmp"])
)
def test_cut_translate_on_mutated_files_exits_cleanly(cut_run, capsys, made, suffix):
    data, how = made
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"in put{suffix}"
        path.write_bytes(data)
        out = Path(tmp) / "out"
        code, err = _run(
            ["cut", "translate", str(path), "--checkpoint", str(cut_run), "--out", str(out)], capsys
        )
        # the oracle: Pillow's own decode of the file (and, unmutated, the size it was made with)
        decoded = reference_size(path)
        if how.intact:
            assert decoded == (how.width, how.height)
        if decoded is None or min(decoded) < 32:
            assert code != 0 and "Traceback" not in err
            assert str(path) in err  # the bad file is named
            if decoded is not None:
                assert "too small" in err
            assert not out.exists() or not any(out.iterdir())
        else:
            assert code == 0, err
            assert sorted(p.name for p in out.iterdir()) == ["in put.png"]
            with Image.open(out / "in put.png") as written:
                written.load()
                assert written.mode == "RGB" and written.size == decoded


_OPTION_VALUES = st.one_of(
    st.sampled_from(
        ["", "-1", "0", "nan", "inf", "1e400", "abc", "..", "/", "\x00", "->", "a->", "->b", " "]
    ),
    st.text(max_size=12),
    st.integers(-(10**6), 10**6).map(str),
)


@pytest.mark.slow  # imports every sub-command's libraries (diffusers, transformers) on its first examples
@FUZZ
@given(
    command=st.sampled_from(["edit", "invert", "cut", "lanit", "ui", "shapes", "eval"]),
    sub=st.sampled_from(["", "train", "translate", "render", "bogus"]),
    options=st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "--steps",
                    "--seed",
                    "--method",
                    "--target",
                    "--source",
                    "--model",
                    "--size",
                    "--preset",
                    "--checkpoint",
                    "--out",
                    "--to",
                    "--port",
                    "--batch-size",
                    "--max-side",
                    "--bogus",
                ]
            ),  # fmt: skip
            _OPTION_VALUES,
        ),
        max_size=4,
    ),
)
def test_hostile_arguments_exit_cleanly(tmp_path, capsys, monkeypatch, command, sub, options):
    """Odd values for every kind of option, with a missing input file: a clean error, nothing started.

    The working directory is a scratch folder, the only input does not exist and ``ui`` may not serve, so
    a combination that happens to be valid fails fast with 'no such file' instead of doing real work.
    """
    import zerocon.ui.app as ui_app

    def no_serving(*args, **kwargs):
        raise AssertionError("the fuzz test must not start the web app")

    monkeypatch.setattr(ui_app, "launch", no_serving)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    argv = [command] + ([sub] if sub else []) + [a for pair in options for a in pair] + ["missing.png"]
    if command == "ui":
        argv = [command] + [
            a for pair in options for a in pair if pair[0] in ("--port", "--model", "--bogus")
        ]
    try:
        code, err = _run(argv, capsys)
    except AssertionError as exc:
        if "must not start the web app" in str(exc):
            return  # valid ui options: it would have served, which is fine
        raise
    # an uncaught exception would have propagated out of main(); what is left must be a clean exit
    assert isinstance(code, int) and "Traceback" not in err
    if code != 0:
        assert err.strip(), "a failing command must say why"
