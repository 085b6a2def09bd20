"""Shared figure builders of the loop's report (one of each: predictive band, index bars)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["predictive_band_figure", "index_bar_figure", "quantile_band_figure", "predictive_curve_figure"]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def predictive_band_figure(points: Mapping[str, Sequence[float]], *, level: float = 0.9,
                           provisional: bool = False, ax: Any = None) -> Any:
    """Hold-out observations against their central predictive intervals and medians.

    ``points`` holds ``y``, ``lower``, ``upper`` and ``median`` (one value per point), as in a
    :class:`~vvuq_twin.loop.Validate` step's figures.
    """
    plt = _plt()
    y = np.asarray(points["y"], float)
    lo, hi, med = (np.asarray(points[k], float) for k in ("lower", "upper", "median"))
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 3.4))
    else:
        fig = ax.figure
    i = np.arange(y.size)
    ax.vlines(i, lo, hi, color="0.6", lw=3, label=f"{level:.0%} predictive interval")
    ax.plot(i, med, "_", color="k", ms=10, label="predictive median")
    out = (y < lo) | (y > hi)
    ax.plot(i[~out], y[~out], "o", color="C0", label="observed (inside)")
    ax.plot(i[out], y[out], "x", color="C3", ms=8, label="observed (outside)")
    ax.set_xlabel("hold-out point")
    ax.set_ylabel("observation")
    ax.legend(fontsize=7, loc="best")
    if provisional:
        ax.set_title("PROVISIONAL", color="C3")
    fig.tight_layout()
    return fig


def index_bar_figure(ranking: Sequence[Mapping[str, Any]], *, key: str = "delta", provisional: bool = False,
                     ax: Any = None) -> Any:
    """Horizontal bars of a sensitivity index per parameter, with its confidence half-width."""
    plt = _plt()
    names = [str(r["parameter"]) for r in ranking]
    vals = np.asarray([float(r[key]) for r in ranking])
    conf = np.asarray([float(r.get(f"{key}_conf", 0.0)) for r in ranking])
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.0, 0.35 * len(names) + 1.2))
    else:
        fig = ax.figure
    pos = np.arange(len(names))[::-1]
    ax.barh(pos, vals, xerr=conf, color="C0", alpha=0.8)
    ax.set_yticks(pos, names)
    ax.set_xlabel(f"sensitivity index ({key})")
    if provisional:
        ax.set_title("PROVISIONAL", color="C3")
    fig.tight_layout()
    return fig


def quantile_band_figure(x: Sequence[float], median: Sequence[float], lower: Sequence[float],
                         upper: Sequence[float], *, xlabel: str, ylabel: str, label: str = "5-95% band",
                         spread: Sequence[float] | None = None, spread_label: str = "sd",
                         provisional: bool = False, ax: Any = None, line_label: str = "median") -> Any:
    """A quantity's median and band against a coordinate (e.g. a forecast horizon).

    With ``spread`` (e.g. the sd at each ``x``), it is drawn on a second axis; ``line_label``
    names the central line in the legend (default ``"median"``).
    """
    plt = _plt()
    x = np.asarray(x, float)
    lo, hi, med = (np.asarray(v, float) for v in (lower, upper, median))
    if not (x.shape == lo.shape == hi.shape == med.shape):
        raise ValueError(f"quantile_band_figure: x, median, lower and upper must have one shape, got "
                         f"{x.shape}, {med.shape}, {lo.shape}, {hi.shape}.")
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 3.4))
    else:
        fig = ax.figure
    ax.fill_between(x, lo, hi, color="C0", alpha=0.3, label=label)
    ax.plot(x, med, color="C0", lw=1.5, label=line_label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if spread is not None:
        ax2 = ax.twinx()
        ax2.plot(x, np.asarray(spread, float), color="C3", lw=1.2, ls="--", label=spread_label)
        ax2.set_ylabel(spread_label, color="C3")
        ax2.legend(fontsize=7, loc="upper right")
    ax.legend(fontsize=7, loc="upper left")
    if provisional:
        ax.set_title("PROVISIONAL", color="C3")
    fig.tight_layout()
    return fig


def predictive_curve_figure(x: Sequence[float], lower: Sequence[float], median: Sequence[float],
                            upper: Sequence[float], *, observed: Any = None, level: float = 0.9,
                            xlabel: str = "input", ylabel: str = "output", observed_label: str = "observed",
                            provisional: bool = False, ax: Any = None) -> Any:
    """A predictive band over one input (central ``level`` interval and median) with observed
    curves (rows of ``observed``, each over ``x``) drawn on top."""
    plt = _plt()
    x = np.asarray(x, float)
    lo, med, hi = (np.asarray(v, float) for v in (lower, median, upper))
    if not (x.shape == lo.shape == med.shape == hi.shape):
        raise ValueError(f"x, lower, median and upper must have one shape, got {x.shape}, {lo.shape}, "
                         f"{med.shape}, {hi.shape}.")
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
    else:
        fig = ax.figure
    if observed is not None:
        obs = np.atleast_2d(np.asarray(observed, float))
        for k, row in enumerate(obs):
            ax.plot(x, row, color="0.55", lw=0.6, alpha=0.6, label=observed_label if k == 0 else None)
    ax.fill_between(x, lo, hi, color="C0", alpha=0.25, label=f"{level:.0%} predictive interval")
    ax.plot(x, med, color="C0", lw=2, label="predictive median")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, loc="best")
    if provisional:
        ax.set_title("PROVISIONAL", color="C3")
    fig.tight_layout()
    return fig
