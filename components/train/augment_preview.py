"""A PNG grid showing what an augmentation policy does, for the Trainer's run artifacts.

Top row: `n` original images; each row below: the same images augmented with a different
batch index. The title names the policy's ops. All images share one gray/color scale, the
originals' [min, max], so standardized (Transform output) images display fine and
brightness/contrast changes stay visible.

    from components.train.augment_preview import save_preview
    save_preview(train_images[:8], policy, seed=42, path=os.path.join(model_run_dir, "augmentation.png"))
"""
from __future__ import annotations

import os
import textwrap

import numpy as np
import tensorflow as tf

from components.train.augment import AugmentationPolicy

AUGMENTED_ROWS = 3


def save_preview(images, policy: AugmentationPolicy, seed: int, path: str, n: int = 8, rows: int = AUGMENTED_ROWS) -> str:
    """Writes the grid to `path` (PNG) and returns the path.

    Args:
        images: float [M, H, W, C] (C = 1 or 3), M >= 1; the first `n` are shown.
        policy: the AugmentationPolicy to preview (mixup/cutmix partners come from these images).
        seed: the augmentation seed; row r uses batch index r, so the grid is reproducible.
        path: the PNG file to write (its folder is created).
        n: how many images per row.
        rows: how many augmented rows below the originals.

    Example:

    >>> save_preview(np.random.rand(8, 8, 8, 1).astype("float32"), policy, seed=0, path="/tmp/aug.png")
    '/tmp/aug.png'
    """
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    images = np.asarray(images, dtype=np.float32)[:n]
    if images.ndim != 4 or images.shape[0] == 0 or images.shape[-1] not in (1, 3):
        raise ValueError(f"save_preview needs images [M >= 1, H, W, 1 or 3], got shape {images.shape}.")
    if n < 1 or rows < 0:
        raise ValueError(f"save_preview needs n >= 1 and rows >= 0, got n={n}, rows={rows}.")
    augment = policy.build(seed)
    labels = tf.zeros([images.shape[0]], tf.int32)
    grid = [images] + [augment(tf.constant(images), labels, index=row)[0].numpy() for row in range(rows)]

    lo, hi = float(images.min()), float(images.max())
    count = images.shape[0]
    fig, axes = plt.subplots(len(grid), count, figsize=(1.2 * count, 1.2 * len(grid) + 0.8), squeeze=False)
    for r, row_images in enumerate(grid):
        for c in range(count):
            ax = axes[r][c]
            ax.imshow(_displayable(row_images[c], lo, hi), cmap="gray" if images.shape[-1] == 1 else None, vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel("original" if r == 0 else f"aug {r}", fontsize=8)
    fig.suptitle("\n".join(textwrap.wrap("augmentation: " + policy.describe(), width=12 * count)), fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
    return path


def _displayable(image: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Scales one image from [lo, hi] to [0, 1] for imshow (constant originals show black)."""
    scaled = np.clip((image - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(image)
    return scaled[..., 0] if scaled.shape[-1] == 1 else scaled
