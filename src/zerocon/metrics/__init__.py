"""Metrics of the papers (each module imports its heavy dependencies itself, so importing this is cheap).

- :mod:`~zerocon.metrics.clip` — CLIP accuracy and CLIP score of edits (pix2pix-zero; torchmetrics' CLIPScore)
- :mod:`~zerocon.metrics.lpips` — LPIPS v0.1 and background LPIPS (object masks: :mod:`~zerocon.metrics.masks`)
- :mod:`~zerocon.metrics.structure` — DINO-ViT key self-similarity structure distance (Splice / PnP)
- :mod:`~zerocon.metrics.fid` — Inception features, FID, KID, mFID (the network: :mod:`~zerocon.metrics.inception`,
  filled from a weights-only file)
- :mod:`~zerocon.metrics.prdc` — precision / recall / Density & Coverage
- :mod:`~zerocon.metrics.swd` — sliced Wasserstein distance
- :mod:`~zerocon.metrics.labels` — multi-hot label precision / recall / F1
- :mod:`~zerocon.metrics.evaluate` / :mod:`~zerocon.metrics.report` — folder evaluation behind ``zerocon eval``
"""
