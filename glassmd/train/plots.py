"""PNG figures of a training run: learning curves, predicted vs true propensity (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from glassmd.plotting import figure as _figure
from glassmd.plotting import save_png as _save

__all__ = ["plot_learning_curves", "plot_predicted_vs_true"]


def plot_learning_curves(history: Sequence[dict], times: Sequence[float], path: str | Path,
                         milestones: Sequence[int] = ()) -> Path:
    """Loss (left) and Pearson per timescale (right) against epoch, train and validation.

    Dashed vertical lines mark the epochs after which the learning rate was lowered (as the paper's Fig. 8).
    """
    path = Path(path)
    plt, fig, axes = _figure(1, 2, (10, 4))
    epochs = [row["epoch"] for row in history]
    ax_loss, ax_r = axes[0]
    ax_loss.plot(epochs, [row["train_loss"] for row in history], label="train", marker=".")
    ax_loss.plot(epochs, [row["val_loss"] for row in history], label="validation", marker=".")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("MSE (normalised labels)")
    ax_loss.set_title("loss")
    for k, t in enumerate(times):
        color = f"C{k}"
        ax_r.plot(epochs, [row[f"train_pearson_t{t:g}"] for row in history], color=color, ls=":",
                  label=f"train t={t:g}")
        ax_r.plot(epochs, [row[f"val_pearson_t{t:g}"] for row in history], color=color, marker=".",
                  label=f"validation t={t:g}")
    ax_r.set_xlabel("epoch")
    ax_r.set_ylabel("Pearson")
    ax_r.set_title("Pearson correlation")
    for ax in (ax_loss, ax_r):
        for m in milestones:
            if epochs and m < max(epochs):
                ax.axvline(m, color="grey", ls="--", lw=0.8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(plt, fig, path)


def plot_predicted_vs_true(predictions: Sequence[np.ndarray], truths: Sequence[np.ndarray],
                           times: Sequence[float], path: str | Path,
                           pearsons: Sequence[float] | None = None) -> Path:
    """One panel per timescale: predicted against true propensity of the test particles."""
    path = Path(path)
    n = max(1, len(times))
    plt, fig, axes = _figure(1, n, (4 * n, 4))
    for k, t in enumerate(times):
        ax = axes[0][k]
        x, y = np.asarray(truths[k]), np.asarray(predictions[k])
        if x.size > 20000:
            ax.hexbin(x, y, gridsize=60, bins="log", cmap="viridis")
        else:
            ax.scatter(x, y, s=4, alpha=0.4)
        if x.size:
            lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
            ax.plot([lo, hi], [lo, hi], color="k", lw=0.8, ls="--")
        title = f"t = {t:g}"
        if pearsons is not None and np.isfinite(pearsons[k]):
            title += f"  (Pearson {pearsons[k]:.3f})"
        ax.set_title(title)
        ax.set_xlabel("true propensity")
        ax.set_ylabel("predicted propensity")
    fig.tight_layout()
    return _save(plt, fig, path)
