"""`accelerate launch` with two CPU processes trains a tiny CUT and both ranks end with identical weights."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cut_helpers import toy_domains

SCRIPT = """
import sys, torch
sys.path.insert(0, {helpers!r})
from cut_helpers import tiny
from zerocon.cut.data import UnpairedDataset
from zerocon.cut.model import CUTModel
from zerocon.training import TrainConfig, Trainer
cfg = tiny("cut")
model = CUTModel(cfg, total_steps=3, seed=0)
data = UnpairedDataset({a!r}, {b!r}, cfg.size, cfg.resolved_load_size)
trainer = Trainer(model, data, {run!r}, TrainConfig(steps=3, checkpoint_every=3, sample_every=3), progress=False)
def flat():
    return torch.cat([p.detach().flatten() for n in ("G", "D", "F") for p in model.networks()[n].parameters()])
initial = flat().clone()
trainer.train()
rank = trainer.accelerator.process_index
torch.save({{"initial": initial, "final": flat()}}, {run!r} + f"/rank{{rank}}.pt")
"""


@pytest.mark.slow
def test_two_cpu_processes_end_with_identical_parameters(tmp_path):
    import torch

    a, b = toy_domains(tmp_path / "data")
    run = tmp_path / "run"
    run.mkdir()
    script = tmp_path / "train.py"
    helpers = str(Path(__file__).resolve().parent)
    script.write_text(SCRIPT.format(helpers=helpers, a=str(a), b=str(b), run=str(run)))
    accelerate = Path(sys.executable).parent / "accelerate"
    # `accelerate launch --cpu` always takes the single-process launcher; several CPU processes go through
    # the torchrun launcher (--multi_gpu) with the CPU forced by ACCELERATE_USE_CPU (Accelerate's MULTI_CPU).
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    cmd += ["--mixed_precision", "no", "--dynamo_backend", "no", str(script)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    r0, r1 = torch.load(run / "rank0.pt", weights_only=True), torch.load(run / "rank1.pt", weights_only=True)
    assert torch.equal(r0["initial"], r1["initial"])  # the same seeded start on both ranks
    assert not torch.equal(r0["initial"], r0["final"])  # the three steps really trained
    assert torch.equal(r0["final"], r1["final"])  # and the averaged gradients kept the ranks in step
    config = json.loads((run / "checkpoint" / "config.json").read_text())
    assert config["world_size"] == 2 and config["step"] == 3
