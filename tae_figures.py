"""The run's figures, drawn as PNG bytes (the caller writes them: tae_files.write_bytes, whole or not at
all): reconstructions, curves and codes. matplotlib is imported on the first figure, with the Agg
backend (files only, no display)."""
import io

import numpy as np


def _png(fig):
    import matplotlib.pyplot as plt  # here, as in _pyplot: --help answers without matplotlib

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def _pyplot():
    import matplotlib  # here: --help answers without matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def reconstructions_png(images, reconstructions, image_shape, n=10):
    """A PNG: `n` test images in the top row, their reconstructions below, drawn as one mosaic
    (one axes: a 2 x n grid of subplots costs ten times as long to draw)."""
    plt = _pyplot()
    n = min(n, len(images))
    h, w = image_shape
    gap = max(1, h // 8)
    mosaic = np.ones((2 * h + gap, n * (w + gap) - gap))
    for row, arr in enumerate((images, reconstructions)):
        for k in range(n):
            top, left = row * (h + gap), k * (w + gap)
            mosaic[top:top + h, left:left + w] = np.clip(arr[k].reshape(image_shape), 0, 1)
    fig, ax = plt.subplots(figsize=(n, 2.2))
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([h / 2, h + gap + h / 2], ["input", "reconstruction"], fontsize=8)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    fig.subplots_adjust(left=0.1, right=0.99, top=0.98, bottom=0.02)  # fixed margins: tight_layout costs 0.2 s
    return _png(fig)


def curves_png(series, ylabel, title, x_key="epoch", references=None, marks=None):
    """A PNG of one or more curves: series is {label: [(x, y), ...]}; references {label: y} are
    drawn as dashed horizontal lines, marks {label: x} as dotted vertical ones."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k, (label, y) in enumerate((references or {}).items()):
        ax.axhline(y, linestyle="--", linewidth=1, color=f"C{7 + k}", label=label)
    for label, x in (marks or {}).items():
        ax.axvline(x, linestyle=":", linewidth=1, color="k", label=label)
    for label, points in series.items():
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="." if len(xs) < 40 else None, label=label)
    ax.set_xlabel(x_key)
    ax.set_ylabel(ylabel)
    if not any(series.values()):
        ax.text(0.5, 0.5, "no epochs trained", ha="center", transform=ax.transAxes)
        return _png(fig)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))  # epochs are whole numbers
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.subplots_adjust(left=0.15, right=0.97, top=0.93, bottom=0.1)  # room for 6x10^-2 beside the label
    return _png(fig)


def codes_png(panels, labels, n=3000, seed=0):
    """A PNG of 2-D points coloured by class, one panel per {title: [M, 2] points} (the same M
    examples in each), at most `n` of them (a fixed random subset), with one legend."""
    plt = _pyplot()
    labels = np.asarray(labels)
    pick = np.sort(np.random.RandomState(seed).permutation(len(labels))[:n])
    classes = np.unique(labels)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 5))
    colour = {c: f"C{k % 10}" for k, c in enumerate(classes)}
    for ax, (title, points) in zip(np.atleast_1d(axes), panels.items()):  # one scatter a panel: fast to draw
        ax.scatter(points[pick, 0], points[pick, 1], s=3, alpha=0.6, c=[colour[c] for c in labels[pick]],
                   rasterized=True)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=colour[c], label=str(c)) for c in classes]
    fig.legend(handles=handles, loc="center right", fontsize=8, title="class")
    fig.subplots_adjust(left=0.02, right=0.92, top=0.92, bottom=0.03, wspace=0.05)
    return _png(fig)
