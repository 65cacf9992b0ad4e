"""How the LPIPS reference numbers in test_metrics_lpips.py were produced (needs torchvision; not a test).

torchmetrics' own LPIPS network (``_NoTrainLpips``, backbone built by torchvision with random weights) is given
the seeded backbone of ``tiny_metric_nets.seeded_backbone_state`` and its shipped v0.1 heads, then scores the
seeded image pairs of ``reference_pairs``. Run: ``python tests/metrics/lpips_reference.py`` with torchvision
importable; paste the printed numbers into the test.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def reference_pairs(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    a = torch.rand(3, 3, 64, 64, generator=generator) * 2 - 1
    b = (a + 0.3 * torch.randn(3, 3, 64, 64, generator=generator)).clamp(-1, 1)
    return a, b


def main() -> None:
    from tiny_metric_nets import seeded_backbone_state
    from torchmetrics.functional.image.lpips import _NoTrainLpips

    a, b = reference_pairs()
    for net in ("alex", "vgg"):
        state = seeded_backbone_state(net)
        reference = _NoTrainLpips(net=net, pnet_rand=True)
        for stage in (
            reference.net.slice1,
            reference.net.slice2,
            reference.net.slice3,
            reference.net.slice4,
            reference.net.slice5,
        ):
            for index, layer in stage.named_children():
                if isinstance(layer, torch.nn.Conv2d):
                    layer.weight.data.copy_(state[f"features.{index}.weight"])
                    layer.bias.data.copy_(state[f"features.{index}.bias"])
        with torch.no_grad():
            print(net, [round(v, 6) for v in reference(a, b).flatten().tolist()])


if __name__ == "__main__":
    main()
