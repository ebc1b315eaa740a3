"""Figures a train script writes, as PNG files, with matplotlib's Agg backend (no display
needed) and no framework: learning curves from the per-epoch metrics of
:class:`common.runs.RunLog` (after every epoch), and a grid of test images titled with
predicted and true labels.
"""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402

from .checkpoint import atomic_path  # noqa: E402


def _save(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


CURVES_FILE = "learning-curves.png"


def learning_curves(history, path, metrics=(("loss", "cross-entropy loss"), ("acc", "accuracy"))):
    """One panel per metric (loss, accuracy), train and val against the epoch, and one of
    the learning rate at each epoch's last step; integer epoch ticks.

    ``history`` is a list of per-epoch records (``RunLog.history()``) holding
    ``train_<metric>`` and ``val_<metric>`` (and ``lr``). Returns ``path``.
    """
    if not history:
        raise ValueError("no epochs recorded: nothing to plot")
    epochs = [record["epoch"] for record in history]
    panels = len(metrics) + 1
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4), squeeze=False)
    for ax, (metric, label) in zip(axes[0], metrics):
        for split, colour in (("train", "tab:red"), ("val", "tab:cyan")):
            key = f"{split}_{metric}"
            points = [(e, r[key]) for e, r in zip(epochs, history) if key in r]
            if points:
                ax.plot(*zip(*points), marker="o", c=colour, label=split)
        ax.set_ylabel(label)
        ax.set_title(f"learning curve: {label}")
        ax.legend()
    ax = axes[0][-1]
    points = [(e, r["lr"]) for e, r in zip(epochs, history) if "lr" in r]
    if points:
        ax.plot(*zip(*points), marker="o", c="tab:green")
    ax.set_ylabel("learning rate")
    ax.set_title("learning rate (last step of the epoch)")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    for ax in axes[0]:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    return _save(fig, path)


def prediction_grid(images, predicted, true, classes, path, cols=6):
    """Images (``H x W x 3`` uint8 each) in a grid, each titled ``pred: ... / true: ...``
    (green when right, red when wrong). Returns ``path``."""
    n = len(images)
    if not (n == len(predicted) == len(true)) or n == 0:
        raise ValueError(f"need as many predictions and labels as images (got {n} images, "
                         f"{len(predicted)} predictions, {len(true)} labels)")
    cols = min(cols, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.8 * cols, 2.1 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, p, t in zip(axes.flat, images, predicted, true):
        ax.imshow(np.asarray(image, dtype=np.uint8))
        ax.set_title(f"pred: {classes[int(p)]}\ntrue: {classes[int(t)]}", fontsize=8,
                     color="tab:green" if int(p) == int(t) else "tab:red")
    return _save(fig, path)
