"""A stage-3 job's four RSMs at a glance (``rsm.png``), drawn without matplotlib.

Each job writes its RSMs as one PNG: native and shared space (rows) ×
within-network and inter-network RSM (columns), colour scale viridis from −1
to 1, with a title line. Pillow draws it directly from the arrays (a few
milliseconds; matplotlib took a noticeable share of a small job's time). The
publication figures are made by :mod:`qmvpa.vis` from ``results.npz``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nnsrm.atomic import atomic_path

#: Pixels per RSM panel side (matrices are resampled to it, nearest neighbour).
PANEL = 256
_MARGIN, _TITLE = 6, 28


def _colours(M: np.ndarray) -> np.ndarray:
    """Viridis RGB of ``M`` on the scale −1 .. 1, shape (n, n, 3) uint8."""
    from matplotlib import colormaps

    lut = (colormaps["viridis"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)  # (256, 3)
    idx = np.clip(np.rint((np.nan_to_num(np.asarray(M, dtype=np.float64)) + 1) / 2 * 255), 0, 255).astype(int)
    return lut[idx]


def write_rsm_quad(path, wrsm_native, irsm_native, wrsm_shared, irsm_shared, title: str = "") -> Path:
    """Write the 2 × 2 RSM image to ``path`` (PNG), atomically.

    Parameters
    ----------
    path : path
        The ``.png`` to write.
    wrsm_native, irsm_native, wrsm_shared, irsm_shared : array, shape (t, t)
        Mean within-network and leave-one-out inter-network RSMs of the
        held-out images in the native and the shared space.
    title : str
        First line of the image.
    """
    from PIL import Image, ImageDraw

    panels = [[wrsm_native, irsm_native], [wrsm_shared, irsm_shared]]
    names = [["native wRSM", "native iRSM"], ["shared wRSM", "shared iRSM"]]
    width = 2 * PANEL + 3 * _MARGIN
    height = _TITLE + 2 * (PANEL + 14) + 2 * _MARGIN
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((_MARGIN, 4), title[:110], fill="black")
    draw.text((_MARGIN, 15), "held-out images sorted by class; colour: Pearson r, -1 (purple) to 1 (yellow)",
              fill="gray")
    for r in range(2):
        for c in range(2):
            M = np.asarray(panels[r][c])
            x = _MARGIN + c * (PANEL + _MARGIN)
            y = _TITLE + r * (PANEL + 14 + _MARGIN)
            img = Image.fromarray(_colours(M), "RGB").resize((PANEL, PANEL), Image.NEAREST)
            canvas.paste(img, (x, y + 12))
            draw.text((x, y), names[r][c], fill="black")
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        canvas.save(tmp, format="PNG")
    return path
