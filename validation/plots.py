"""Draw the plots of a claim (:class:`validation.core.Plot` or its JSON dict) with matplotlib.

The runner renders each claim's plots into PNGs as the claim finishes (:func:`render_plots`), the
report links those files, and the notebooks draw the same plots inline (:func:`show_plot`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from zotheory import atomicio

#: The folder, inside a report folder, that holds the PNGs.
PLOT_DIR = "plots"
_PALETTE = [
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#17becf",
    "#bcbd22",
]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "plot"


def _floats(values: Sequence[Any]) -> list[float]:
    out = []
    for v in values:
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            out.append(math.nan)
    return out


def draw_plot(plot: dict[str, Any] | Any, ax: Any) -> None:
    """Draw one :class:`validation.core.Plot` (or its JSON dict) on a matplotlib axis."""
    if not isinstance(plot, dict):
        plot = asdict(plot)
    for k, s in enumerate(plot.get("series", [])):
        x, y = _floats(s.get("x", [])), _floats(s.get("y", []))
        color = s.get("color") or _PALETTE[k % len(_PALETTE)]
        style = s.get("style", "line")
        label = s.get("label")
        if style == "band":
            ax.fill_between(x, _floats(s["ylow"]), _floats(s["yhigh"]), color=color, alpha=0.2, label=label, lw=0)
        elif style == "points":
            if s.get("yerr") is not None:
                ax.errorbar(x, y, yerr=_floats(s["yerr"]), fmt="o", ms=3.5, color=color, label=label, capsize=2, lw=1)
            else:
                ax.plot(x, y, "o", ms=3.5, color=color, label=label)
        elif style == "step":
            ax.step(x, y, where="post", color=color, label=label, lw=1.4)
        elif style == "dashed":
            ax.plot(x, y, "--", color=color, label=label, lw=1.4)
        elif s.get("yerr") is not None:
            ax.errorbar(x, y, yerr=_floats(s["yerr"]), color=color, label=label, capsize=2, lw=1.4)
        else:
            ax.plot(x, y, "-", color=color, label=label, lw=1.4)
    for h in plot.get("hlines", []):
        ax.axhline(float(h["y"]), color=h.get("color", "k"), ls=h.get("style", ":"), lw=1, label=h.get("label"))
    ax.set_xscale(plot.get("xscale", "linear"))  # before the tick labels: setting a scale resets the tick locator
    ax.set_yscale(plot.get("yscale", "linear"))
    if plot.get("xticklabels"):
        labels = plot["xticklabels"]
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=6.5)
        ax.set_xlim(-0.5, len(labels) - 0.5)
    ax.set_title(plot.get("title", ""), fontsize=9)
    ax.set_xlabel(plot.get("xlabel", ""), fontsize=8)
    ax.set_ylabel(plot.get("ylabel", ""), fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(True, which="major", alpha=0.3)
    if any(s.get("label") for s in plot.get("series", [])) or any(h.get("label") for h in plot.get("hlines", [])):
        ax.legend(fontsize=6.5, loc="best", framealpha=0.8)


def show_plot(plot: dict[str, Any] | Any) -> Any:
    """Draw a plot in a new figure with the current backend (inline in a notebook) and return the figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    draw_plot(plot, ax)
    fig.tight_layout()
    plt.show()
    return fig


def render_plot(plot: dict[str, Any], path: Path) -> None:
    """Draw one :class:`validation.core.Plot` (as its JSON dict) into a PNG with the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.6, 3.6), dpi=90)
    try:
        draw_plot(plot, ax)
        fig.tight_layout()
        with atomicio.atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", metadata={"Software": None})
    finally:
        plt.close(fig)


def render_plots(claim_name: str, plots: Sequence[dict[str, Any]], plot_dir: Path) -> list[str]:
    """Render every plot of a claim; returns the file names relative to the report folder."""
    files = []
    for k, plot in enumerate(plots):
        name = f"{_slug(claim_name)}_{k}.png"
        render_plot(plot, Path(plot_dir) / name)
        files.append(f"{PLOT_DIR}/{name}")
    return files
