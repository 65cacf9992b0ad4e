"""Fault tolerance of what the project writes and reads: crashes never leave a half file under a final name,
damaged checkpoints are refused with a clear error, and nothing is unpickled.

The crash tests run a writer in a child process and ``kill -9`` it at many moments, then check what is on disk:
under the final name there is either nothing, the previous complete file, or the new complete file.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import zerocon.io as zio
from zerocon.errors import ZeroconError
from zerocon.io import load_checkpoint, save_checkpoint

SRC = Path(__file__).resolve().parents[1] / "src"

WRITER = textwrap.dedent(
    """
    import sys, torch
    from pathlib import Path
    from zerocon.io import save_checkpoint, write_bytes
    kind, target = sys.argv[1], Path(sys.argv[2])
    i = 0
    while True:
        i += 1
        if kind == "bytes":
            # every version is 8 MiB of one repeated byte: a torn write would mix two values or be short
            write_bytes(target, bytes([i % 251]) * (8 << 20))
        else:
            value = torch.full((1 << 20,), float(i))
            save_checkpoint(target, {"networks": {"w": value}, "optimizers": {"m": value * 2}}, {"step": i})
        print(i, flush=True)
    """
)


def _start_writer(kind: str, target: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, kind, str(target)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()  # one complete write before the first kill
    assert first.strip() == "1", f"writer did not start: {first!r}"
    return proc


def _kill_after(proc: subprocess.Popen, delay: float) -> None:
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


DELAYS = [0.0, 0.005, 0.02, 0.05, 0.1]


@pytest.mark.slow  # each kill restarts a Python that imports torch
def test_killed_file_writer_never_leaves_a_torn_file(tmp_path):
    target = tmp_path / "out.bin"
    for delay in DELAYS:
        _kill_after(_start_writer("bytes", target), delay)
        data = target.read_bytes()
        assert len(data) == 8 << 20, "a killed writer left a short file under the final name"
        assert data.count(data[:1]) == len(data), "a killed writer left a mixed file under the final name"
    # what a crash may leave is a temporary file beside it, never under the final name
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "out.bin"]
    assert all(re.fullmatch(r"\.out\.bin\..+\.tmp", name) for name in leftovers), leftovers


@pytest.mark.slow
def test_killed_checkpoint_writer_leaves_a_loadable_checkpoint(tmp_path):
    target = tmp_path / "checkpoint"
    for delay in DELAYS:
        _kill_after(_start_writer("checkpoint", target), delay)
        tensors, config = load_checkpoint(target)  # verifies the manifest: complete and consistent
        step = config["step"]
        assert torch.equal(tensors["networks"]["w"], torch.full((1 << 20,), float(step)))
        assert torch.equal(tensors["optimizers"]["m"], torch.full((1 << 20,), 2.0 * step))


def test_crash_between_the_two_renames_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """Where an atomic exchange of folders is not available, replacing a checkpoint takes two renames; a crash
    between them must still leave the previous checkpoint loadable."""
    target = tmp_path / "checkpoint"
    save_checkpoint(target, {"networks": {"w": torch.ones(3)}}, {"step": 1})
    monkeypatch.setattr(zio, "_exchange", lambda a, b: False)
    real_replace = os.replace
    calls = []

    def crash_on_second(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated crash between the renames")
        return real_replace(src, dst)

    monkeypatch.setattr(zio.os, "replace", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(target, {"networks": {"w": torch.zeros(3)}}, {"step": 2})
    monkeypatch.setattr(zio.os, "replace", real_replace)
    tensors, config = load_checkpoint(target)
    assert config["step"] == 1 and torch.equal(tensors["networks"]["w"], torch.ones(3))
    # and the next save repairs the folder
    save_checkpoint(target, {"networks": {"w": torch.zeros(3)}}, {"step": 3})
    assert load_checkpoint(target)[1]["step"] == 3
    assert not (tmp_path / ".checkpoint.old").exists()


def test_exchange_replaces_a_checkpoint_in_one_step(tmp_path, monkeypatch):
    target = tmp_path / "checkpoint"
    save_checkpoint(target, {"networks": {"w": torch.ones(3)}}, {"step": 1})
    seen = []
    real = zio._exchange

    def spy(a, b):
        ok = real(a, b)
        seen.append(ok)
        return ok

    monkeypatch.setattr(zio, "_exchange", spy)
    save_checkpoint(target, {"networks": {"w": torch.zeros(3)}}, {"step": 2})
    assert load_checkpoint(target)[1]["step"] == 2
    if sys.platform.startswith("linux"):
        assert seen == [True], "Linux should swap the folders atomically (renameat2 RENAME_EXCHANGE)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "manifest", "extra_tensor"])
def test_damaged_checkpoint_is_rejected_with_a_clear_error(tmp_path, damage):
    target = tmp_path / "checkpoint"
    save_checkpoint(
        target, {"networks": {"w": torch.arange(1000.0)}}, {"step": 5, "method": {"method": "cut"}}
    )
    weights = target / "networks.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:-100])
        match = "does not match its manifest"
    elif damage == "flip":
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 0x01
        weights.write_bytes(bytes(data))
        match = "does not match its manifest"
    elif damage == "delete":
        weights.unlink()
        match = "networks.safetensors is missing"
    elif damage == "manifest":
        (target / "manifest.json").write_text("{not json")
        match = "manifest.json is unreadable"
    else:  # a file rewritten with other (valid) tensors and the manifest not updated
        from safetensors.torch import save_file

        save_file({"w": torch.zeros(1000)}, str(weights))
        match = "does not match its manifest"
    with pytest.raises(ZeroconError, match=match) as info:
        load_checkpoint(target)
    message = str(info.value)
    assert "\n" not in message and ("corrupt checkpoint" in message)


@pytest.mark.slow  # a CLI subprocess
def test_cli_reports_a_tampered_checkpoint_in_one_line(tmp_path):
    """Through the CLI: a tampered run gives one line on stderr and exit status 2 (no traceback)."""
    run = tmp_path / "run"
    save_checkpoint(run / "checkpoint", {"networks": {"G.x": torch.ones(2)}}, {"method": {"method": "cut"}})
    config = run / "checkpoint" / "config.json"
    config.write_text(json.dumps({"method": {"method": "cut", "preset": "fastcut"}}))
    image = tmp_path / "in.png"
    from PIL import Image

    Image.new("RGB", (40, 40)).save(image)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "zerocon.cli",
            "cut",
            "translate",
            str(image),
            "--checkpoint",
            str(run),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not match its manifest" in lines[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_no_torch_load_without_weights_only():
    """Checkpoints are safetensors; any torch.load in the package must pass weights_only=True (no pickle)."""
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text()
        for match in re.finditer(r"torch\.load\(", text):
            start = match.end()
            depth, end = 1, start
            while depth and end < len(text):
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                end += 1
            if not re.search(r"weights_only\s*=\s*True", text[start:end]):
                line = text.count("\n", 0, match.start()) + 1
                offenders.append(f"{path.relative_to(SRC)}:{line}")
        for match in re.finditer(r"^\s*(import pickle|from pickle |import dill|import joblib)", text, re.M):
            line = text.count("\n", 0, match.start()) + 1
            offenders.append(f"{path.relative_to(SRC)}:{line} ({match.group(1).strip()})")
    assert not offenders, f"unsafe deserialisation in: {offenders}"


def test_grep_test_catches_an_unsafe_load(tmp_path, monkeypatch):
    """The scanner above is not vacuous: it flags a bare torch.load and accepts a safe one."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "bad.py").write_text("import torch\nx = torch.load(\n    'f.pt', map_location='cpu'\n)\n")
    (package / "good.py").write_text("import torch\nx = torch.load('f.pt', weights_only=True)\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", package)
    with pytest.raises(AssertionError, match=r"bad\.py:2"):
        test_no_torch_load_without_weights_only()
    (package / "bad.py").unlink()
    test_no_torch_load_without_weights_only()
