"""Helpers both generators share: smooth noise, boxes measured from masks, the camera look, labels."""
from __future__ import annotations

import math

import cv2
import numpy as np


def noise_field(rng, h, w, cell):
    """Smooth random field of unit-ish amplitude with features about `cell` pixels across."""
    g = rng.standard_normal((h // cell + 2, w // cell + 2)).astype(np.float32)
    # Cubic to a quarter size, then linear: as smooth as cubic all the way at a fraction of the cost.
    g = cv2.resize(g, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_CUBIC)
    return cv2.resize(g, (w, h), interpolation=cv2.INTER_LINEAR)


def mask_box(mask, thr=0.5):
    """(x1, y1, x2, y2) pixel-edge box of the pixels above `thr`, or None."""
    on = mask > thr
    rows = np.flatnonzero(on.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(on.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def shift_box(box, dx, dy):
    return box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy


def placed_box(mask, x0, y0, boxes, gap):
    """Box of `mask` (a crop at x0, y0) in image pixels, or None when the mask is empty or the box comes
    within `gap` of one of `boxes`."""
    box = mask_box(mask)
    if box is None:
        return None
    box = shift_box(box, x0, y0)
    return box if clear_of(box, boxes, gap) else None


def clear_of(box, boxes, gap):
    """True when `box` grown by `gap` touches none of `boxes`."""
    x1, y1, x2, y2 = box[0] - gap, box[1] - gap, box[2] + gap, box[3] + gap
    for b in boxes:
        if x1 < b[2] and b[0] < x2 and y1 < b[3] and b[1] < y2:
            return False
    return True


_NOISE_SIDE = 1024
_noise_bank = []


def sensor_noise(rng, h, w):
    """Unit Gaussian noise for an h x w image: a random window of one fixed noise tile.

    Drawing fresh normals costs more than the rest of an image; a window at a random offset of a
    tile made once (from a constant seed, so results never depend on call order) looks the same to
    a detector and keeps generation fast.
    """
    if not _noise_bank:
        _noise_bank.append(np.random.default_rng(0x5EED).standard_normal((_NOISE_SIDE, _NOISE_SIDE), np.float32))
    bank = _noise_bank[0]
    if h > _NOISE_SIDE or w > _NOISE_SIDE:
        bank = np.tile(bank, (-(-h // _NOISE_SIDE), -(-w // _NOISE_SIDE)))
    oy = int(rng.integers(0, bank.shape[0] - h + 1))
    ox = int(rng.integers(0, bank.shape[1] - w + 1))
    return bank[oy:oy + h, ox:ox + w]


def finish(rng, img, strength):
    """Camera look shared by both kinds: lighting gradient, vignette, sensor noise.

    `img` is planar float32 (3, H, W) - planar because numpy broadcasting over a trailing axis
    of 3 is several times slower; returns the interleaved uint8 BGR image.
    """
    h, w = img.shape[1:]
    ang = rng.uniform(0, 2 * math.pi)
    a = rng.uniform(*strength)
    vig = 0.5 * rng.uniform(0.0, 0.18)
    lx = np.linspace(-1, 1, w, dtype=np.float32)
    ly = np.linspace(-1, 1, h, dtype=np.float32)
    # Gradient and vignette are both separable: one broadcast add builds the gain.
    gx = lx * (a * math.cos(ang)) - vig * lx * lx
    gy = 1.0 + ly * (a * math.sin(ang)) - vig * ly * ly
    gain = gx[None, :] + gy[:, None]
    noise = sensor_noise(rng, h, w) * rng.uniform(1.2, 4.5)
    out = []
    for c in range(3):
        p = img[c]
        p *= gain
        p += noise
        np.clip(p, 0, 255, out=p)
        out.append(p.astype(np.uint8))
    return cv2.merge(out)


def to_labels(boxes, h, w):
    """[(cls, x1, y1, x2, y2)] pixel boxes -> (N, 5) float64 [cls, cx, cy, w, h] normalised."""
    out = np.zeros((len(boxes), 5), np.float64)
    for i, (c, x1, y1, x2, y2) in enumerate(boxes):
        x1, x2 = max(0, x1), min(w, x2)
        y1, y2 = max(0, y1), min(h, y2)
        out[i] = (c, (x1 + x2) / 2.0 / w, (y1 + y2) / 2.0 / h, (x2 - x1) / float(w), (y2 - y1) / float(h))
    return out


def pick(rng, idx, width):
    """A random (x, y) among the flat indices `idx` of an image `width` wide, or None."""
    if idx.size == 0:
        return None
    i = int(idx[int(rng.integers(idx.size))])
    return i % width, i // width
