"""Writing evaluation results: ``metrics.json``, ``metrics.md`` (a Markdown table) and ``metrics.png`` (bars).

One run is one dict from :mod:`zerocon.metrics.evaluate` plus a ``method`` name. Several runs (``--compare``)
share one table (a row per method, a column per metric) and one plot (a panel per metric, a bar per method),
since the metrics have different scales. Every file is written atomically.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zerocon.errors import ZeroconError
from zerocon.io import write_bytes, write_json
from zerocon.metrics.evaluate import METRIC_INFO

RESULT_FILE = "metrics.json"


def load_run(path: str | os.PathLike) -> dict[str, Any]:
    """A run written earlier: its ``metrics.json`` file or the folder holding it."""
    path = Path(path)
    file = path / RESULT_FILE if path.is_dir() else path
    if not file.is_file():
        raise ZeroconError(f"--compare {path}: no {RESULT_FILE} there (run 'zerocon eval' with --out first)")
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise ZeroconError(f"--compare {file}: not a readable results file ({exc})") from exc
    runs = data.get("runs") if isinstance(data, dict) else None
    if isinstance(runs, list) and runs:  # a comparison file: take its runs
        return {"runs": runs}
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        raise ZeroconError(f"--compare {file}: not a zerocon metrics file")
    data.setdefault("method", file.parent.name)
    return data


def flatten_runs(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Expand comparison files into their runs; a run met twice (same method and numbers) is kept once."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for run in runs:
        for item in run["runs"] if "runs" in run else [run]:
            key = json.dumps([item.get("method"), item.get("metrics")], sort_keys=True, default=str)
            if key not in seen:
                seen.add(key)
                out.append(item)
    return out


def _columns(runs: Sequence[dict[str, Any]]) -> list[str]:
    keys: list[str] = []
    for run in runs:
        for key in run["metrics"]:
            if key in METRIC_INFO and key not in keys:
                keys.append(key)
    order = list(METRIC_INFO)
    return sorted(keys, key=order.index)


def _fmt(key: str, value: float | None) -> str:
    if value is None:
        return "–"
    if key == "clip_accuracy":
        return f"{value:.1f}"
    if key in ("fid", "mfid", "clip_score"):
        return f"{value:.2f}"
    return f"{value:.4f}"


def markdown_table(runs: Sequence[dict[str, Any]]) -> str:
    """One row per method; ↑/↓ in the header say which way is better; the best value of a column is bold."""
    columns = _columns(runs)
    header = (
        "| method | n | "
        + " | ".join(f"{METRIC_INFO[c][0]} {'↑' if METRIC_INFO[c][1] else '↓'}" for c in columns)
        + " |"
    )
    lines = [header, "|" + "---|" * (len(columns) + 2)]
    best: dict[str, float] = {}
    for c in columns:
        values = [r["metrics"][c] for r in runs if c in r["metrics"]]
        if len(values) > 1:
            best[c] = max(values) if METRIC_INFO[c][1] else min(values)
    for run in runs:
        cells = []
        for c in columns:
            value = run["metrics"].get(c)
            text = _fmt(c, value)
            cells.append(f"**{text}**" if value is not None and c in best and value == best[c] else text)
        lines.append(f"| {run.get('method', '?')} | {run.get('count', '')} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def bar_plot(runs: Sequence[dict[str, Any]]) -> bytes:
    """PNG bytes: one panel per metric, one bar per method (matplotlib, headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = _columns(runs)
    if not columns:
        raise ZeroconError("nothing to plot: the runs have no metrics")
    methods = [str(r.get("method", "?")) for r in runs]
    fig, axes = plt.subplots(1, len(columns), figsize=(max(3.0, 2.6 * len(columns)), 3.4), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, key in zip(axes[0], columns):
        values = [r["metrics"].get(key, float("nan")) for r in runs]
        bars = ax.bar(range(len(runs)), values, color=[colors[i % len(colors)] for i in range(len(runs))])
        ax.set_title(f"{METRIC_INFO[key][0]} {'↑' if METRIC_INFO[key][1] else '↓'}", fontsize=10)
        ax.set_xticks(range(len(runs)))
        ax.set_xticklabels(methods, rotation=30, ha="right", fontsize=8)
        for bar, value in zip(bars, values):
            if value == value:  # not NaN
                ax.annotate(
                    _fmt(key, value),
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
        ax.margins(y=0.15)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    return buffer.getvalue()


def write_report(runs: Sequence[dict[str, Any]], out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``metrics.json`` (one run as is, several as ``{"runs": [...]}``), ``metrics.md``, ``metrics.png``."""
    runs = flatten_runs(runs)
    if not runs:
        raise ZeroconError("no results to write")
    out = Path(out_dir)
    paths = {"json": out / RESULT_FILE, "table": out / "metrics.md", "plot": out / "metrics.png"}
    write_json(paths["json"], runs[0] if len(runs) == 1 else {"runs": list(runs)})
    write_bytes(paths["table"], markdown_table(runs).encode())
    write_bytes(paths["plot"], bar_plot(runs))
    return paths
