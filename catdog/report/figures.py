"""The report's charts as PNG bytes (matplotlib, Agg): learning curves, calibration and robustness."""

from __future__ import annotations

import io

import numpy as np

CALIBRATION_BINS = 10
ROBUSTNESS_COLOURS = {"clean": "tab:green", "shift": "tab:orange", "group": "tab:purple"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    _pyplot().close(fig)
    return buffer.getvalue()


def learning_curves(history: dict, best_epoch: int | None) -> bytes | None:
    """Loss and accuracy per epoch, train and validation, from history.json; None without a loss curve."""
    if not history.get("loss"):
        return None
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = np.arange(1, len(history["loss"]) + 1)
    keys = [k for k in ("loss", "accuracy") if history.get(k)]
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 3.8), squeeze=False)
    # a marker on each epoch: a fine-tune of one or two epochs drew no line at all
    mark = {"marker": "o", "markersize": 5} if len(epochs) <= 20 else {}
    for ax, key in zip(axes[0], keys):
        ax.plot(epochs, history[key], label="train", **mark)
        if history.get(f"val_{key}"):
            ax.plot(epochs[: len(history[f"val_{key}"])], history[f"val_{key}"], label="validation", **mark)
        ax.set_xlim(0.5, len(epochs) + 0.5)
        if len(epochs) <= 20:  # whole epochs as ticks (one epoch had 0.995, 1.005)
            ax.set_xticks(epochs)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if best_epoch:
            ax.axvline(best_epoch, color="grey", linestyle="--", label=f"best epoch {best_epoch}")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return _png(fig)


def reliability(labels: np.ndarray, p_dog: np.ndarray, bins: int = CALIBRATION_BINS) -> list[dict]:
    """Per bin of predicted P(dog) (equal width on [0, 1]): photo count, mean predicted P(dog) and
    the observed share of dogs. Empty bins are left out."""
    labels, p_dog = np.asarray(labels, float), np.asarray(p_dog, float)
    which = np.minimum((p_dog * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        mask = which == b
        if mask.any():
            rows.append({"bin": b, "n": int(mask.sum()), "predicted": float(p_dog[mask].mean()), "observed": float(labels[mask].mean())})
    return rows


def calibration(labels: np.ndarray, p_dog: np.ndarray, title: str) -> bytes:
    """Reliability diagram (observed share of dogs against predicted P(dog), marker area ~ photos)
    beside the histogram of P(dog) per true class."""
    plt = _pyplot()
    rows = reliability(labels, p_dog)
    fig, (ax, hist) = plt.subplots(1, 2, figsize=(11, 3.9))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--")
    # points, not a line: a middle bin holds a handful of photos, and its share jumps by whole photos
    ax.scatter(
        [r["predicted"] for r in rows], [r["observed"] for r in rows], s=[20 + 180 * r["n"] / len(labels) for r in rows],
        color="tab:blue", zorder=3,
    )
    for r in rows:
        ax.annotate(str(r["n"]), (r["predicted"], r["observed"]), textcoords="offset points", xytext=(6, -10), fontsize=8)
    ax.set(xlim=(-0.04, 1.04), ylim=(-0.06, 1.08), xlabel="predicted P(dog), bins of 0.1", ylabel="share of dogs", title=title)
    ax.text(0.02, 0.97, "dashed: perfectly calibrated\nlabels: photos per bin", transform=ax.transAxes, va="top", fontsize=8, color="dimgrey")
    ax.grid(alpha=0.3)
    edges = np.linspace(0, 1, 21)
    for label, name in ((0, "cats"), (1, "dogs")):
        hist.hist(np.asarray(p_dog)[np.asarray(labels) == label], bins=edges, alpha=0.6, label=name)
    hist.set(yscale="log", xlabel="predicted P(dog)", ylabel="photos (log scale)", title="predictions by true class")
    hist.yaxis.set_major_formatter(_pyplot().matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    hist.legend()
    fig.tight_layout()
    return _png(fig)


def robustness(rows: list[dict]) -> bytes | None:
    """Horizontal bars of log loss per row of `facts.robustness_rows` (top to bottom in their
    order, coloured by kind: ROBUSTNESS_COLOURS), with a dashed line at the clean row's value;
    None without rows."""
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.38 * len(rows)))
    y = np.arange(len(rows))[::-1]  # the first row on top
    values = [r["log_loss"] for r in rows]
    ax.barh(y, values, color=[ROBUSTNESS_COLOURS.get(r["kind"], "tab:orange") for r in rows])
    ax.set_yticks(y, [r["name"] for r in rows])
    for yi, v in zip(y, values):
        ax.annotate(f"{v:.4f}", (v, yi), textcoords="offset points", xytext=(4, 0), va="center", fontsize=8)
    clean = next((r["log_loss"] for r in rows if r["kind"] == "clean"), None)
    if clean is not None:
        ax.axvline(clean, color="dimgrey", linestyle="--", linewidth=1)
    names = {"clean": "clean photos", "shift": "shifted photos", "group": "held-out groups"}
    kinds = [k for k in ROBUSTNESS_COLOURS if any(r["kind"] == k for r in rows)]
    handles = [plt.Rectangle((0, 0), 1, 1, color=ROBUSTNESS_COLOURS[k]) for k in kinds]
    # outside the axes, to the right: inside it would cover the longest bars' values
    ax.legend(handles, [names[k] for k in kinds], fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set(xlabel="log loss (dashed: clean)", xlim=(0, max(values) * 1.18 or 1), title="log loss on shifted photos")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _png(fig)
