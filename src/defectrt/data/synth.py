"""Procedurally generated defect datasets in YOLO format (numpy + OpenCV only, no torch).

Two kinds:

* ``screw``: a metal screw (shaded head, threaded shank, varying pose, scale and position) on a
  textured conveyor background, with the screw-inspection defect classes ``scratch``, ``dent``,
  ``coating`` (a coating / colour anomaly) and ``unprocessed`` (a band of the shank left without
  thread). Default size 384x672 (H x W), the aspect of a line-scan style inspection camera.
* ``pcb``: a bare board (green solder mask, copper traces in buses, pads, drilled holes,
  silkscreen, IC bodies) with the six PKU-PCB defect classes, each a few percent of the image side.
  Default 640x640.

Every image depends only on (kind, seed, index, size) - each draws from its own
``numpy.random.default_rng([seed, kind, index])`` stream - so the same seed always yields the same
labels, and one image can be regenerated without the others.

Boxes are measured from the rendered defect masks (pixels at >= half coverage), never from the
parameters used to draw them, so a box is tight around what is visible. Defects never overlap (a
few pixels of clearance) and each kind has one consistent look, so a small detector can learn the
task while sizes, contrasts and shapes still vary.
"""
from __future__ import annotations

import json
import math
import os
import re
import time

import cv2
import numpy as np

from defectrt.errors import UserInputError
from defectrt.fileio import atomic_dir, describe_foreign, foreign_entries, is_temporary

SCREW_NAMES = ("scratch", "dent", "coating", "unprocessed")
PCB_NAMES = ("missing_hole", "mouse_bite", "open_circuit", "short", "spur", "spurious_copper")
KINDS = {"screw": SCREW_NAMES, "pcb": PCB_NAMES}
DEFAULT_IMGSZ = {"screw": (384, 672), "pcb": (640, 640)}
# Part of every image's random stream: bump it whenever the renderers change what a seed yields.
GENERATOR_VERSION = 1
_KIND_CODE = {"screw": 1, "pcb": 2}
_MIN_SIDE = 128


# ----------------------------------------------------------------------------- shared helpers


def _noise_field(rng, h, w, cell):
    """Smooth random field of unit-ish amplitude with features about `cell` pixels across."""
    g = rng.standard_normal((h // cell + 2, w // cell + 2)).astype(np.float32)
    # Cubic to a quarter size, then linear: as smooth as cubic all the way at a fraction of the cost.
    g = cv2.resize(g, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_CUBIC)
    return cv2.resize(g, (w, h), interpolation=cv2.INTER_LINEAR)


def _mask_box(mask, thr=0.5):
    """(x1, y1, x2, y2) pixel-edge box of the pixels above `thr`, or None."""
    on = mask > thr
    rows = np.flatnonzero(on.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(on.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _shift_box(box, dx, dy):
    return box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy


def _placed_box(mask, x0, y0, boxes, gap):
    """Box of `mask` (a crop at x0, y0) in image pixels, or None when the mask is empty or the box comes
    within `gap` of one of `boxes`."""
    box = _mask_box(mask)
    if box is None:
        return None
    box = _shift_box(box, x0, y0)
    return box if _clear_of(box, boxes, gap) else None


def _clear_of(box, boxes, gap):
    """True when `box` grown by `gap` touches none of `boxes`."""
    x1, y1, x2, y2 = box[0] - gap, box[1] - gap, box[2] + gap, box[3] + gap
    for b in boxes:
        if x1 < b[2] and b[0] < x2 and y1 < b[3] and b[1] < y2:
            return False
    return True


_NOISE_SIDE = 1024
_noise_bank = []


def _sensor_noise(rng, h, w):
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


def _finish(rng, img, strength):
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
    noise = _sensor_noise(rng, h, w) * rng.uniform(1.2, 4.5)
    out = []
    for c in range(3):
        p = img[c]
        p *= gain
        p += noise
        np.clip(p, 0, 255, out=p)
        out.append(p.astype(np.uint8))
    return cv2.merge(out)


def _to_labels(boxes, h, w):
    """[(cls, x1, y1, x2, y2)] pixel boxes -> (N, 5) float64 [cls, cx, cy, w, h] normalised."""
    out = np.zeros((len(boxes), 5), np.float64)
    for i, (c, x1, y1, x2, y2) in enumerate(boxes):
        x1, x2 = max(0, x1), min(w, x2)
        y1, y2 = max(0, y1), min(h, y2)
        out[i] = (c, (x1 + x2) / 2.0 / w, (y1 + y2) / 2.0 / h, (x2 - x1) / float(w), (y2 - y1) / float(h))
    return out


# ----------------------------------------------------------------------------- screw


def _screw_background(rng, h, w, sc):
    # Built at half resolution, then upsampled once: it is all texture no finer than ~4 pixels.
    hs, ws = max(1, h // 2), max(1, w // 2)
    base = rng.uniform(30, 140) * rng.uniform(0.92, 1.08, 3).astype(np.float32)
    tex = _noise_field(rng, hs, ws, max(4, int(24 * sc))) * rng.uniform(3, 10)
    cell = max(2, int(3 * sc))
    fine = rng.standard_normal((hs // cell + 2, ws // cell + 2)).astype(np.float32)
    tex += cv2.resize(fine, (ws, hs), interpolation=cv2.INTER_LINEAR) * rng.uniform(1.5, 5)
    if rng.random() < 0.5:  # woven conveyor belt
        f = 2 * rng.uniform(0.25, 0.6) / sc
        wx = np.sin(np.arange(ws, dtype=np.float32) * f + rng.uniform(0, 6.3)) * rng.uniform(2, 6)
        wy = np.sin(np.arange(hs, dtype=np.float32) * f + rng.uniform(0, 6.3))
        tex += wy[:, None] * wx[None, :]
    tex = cv2.resize(tex, (w, h), interpolation=cv2.INTER_LINEAR)
    return tex[None] + base[:, None, None]


def _screw_canvas(rng, ltot, d, dh, n_band, sc):
    """Render the screw lying along +x in its own frame.

    Returns (premultiplied BGR + alpha as HxWx4 float32, [band weight maps]). The silhouette is
    anti-aliased analytically (coverage from the distance to each edge), which is much cheaper than
    supersampling and keeps the warped masks honest about where the screw is.
    """
    lh = d * rng.uniform(0.55, 0.85)  # head length along the axis
    lt = d * rng.uniform(0.45, 0.7)  # tip length
    pitch = d * rng.uniform(0.15, 0.22)
    tdepth = pitch * rng.uniform(0.25, 0.4)
    neck = d * rng.uniform(0.0, 0.4)  # short: a long plain neck would look like an unprocessed band
    hc, wc = int(math.ceil(dh)) + 8, int(math.ceil(ltot)) + 8
    x0 = 4.0
    xs, xe = x0 + lh, x0 + ltot
    xthr, xtip = xs + neck, xe - lt
    X = np.arange(wc, dtype=np.float32)
    Y = (np.arange(hc, dtype=np.float32) - (hc - 1) / 2.0)[:, None]

    # Unprocessed bands: stretches of the threaded shank with no thread rolled into them.
    bands = []
    lo, hi = xthr + 3 * sc, xtip - 3 * sc
    for _ in range(n_band):
        bw = max(d * rng.uniform(0.3, 0.8), 14 * sc)
        for _try in range(8):
            if hi - lo < bw:
                break
            b0 = rng.uniform(lo, hi - bw)
            if all(b0 + bw + 10 * sc < c0 or b0 > c1 + 10 * sc for c0, c1 in bands):
                bands.append((b0, b0 + bw))
                break
    band_col = np.zeros(wc, np.float32)
    band_cols = []
    for b0, b1 in bands:
        bc = np.clip(X - b0 + 0.5, 0, 1) * np.clip(b1 - X + 0.5, 0, 1)
        band_cols.append(bc)
        band_col = np.maximum(band_col, bc)

    # Shank silhouette: serrated by the thread, opposite flanks half a pitch apart, tapered tip.
    phase = rng.uniform(0, pitch)
    u = (X - phase) / pitch
    tri_top = np.abs(2 * (u - np.floor(u)) - 1)
    u = u + 0.5
    tri_bot = np.abs(2 * (u - np.floor(u)) - 1)
    threaded = (X >= xthr).astype(np.float32) * (1 - band_col)
    hw_top = d / 2 - tdepth * (tri_top * threaded + 0.5 * band_col)
    hw_bot = d / 2 - tdepth * (tri_bot * threaded + 0.5 * band_col)
    tip_frac = rng.uniform(0.2, 0.35)
    taper = 1 - np.clip((X - xtip) / lt, 0, 1) * (1 - tip_frac)
    hw_top, hw_bot = hw_top * taper, hw_bot * taper
    colcov = np.clip(X - xs + 1.5, 0, 1) * np.clip(xe - X + 0.5, 0, 1)
    a_sh = np.clip(Y + hw_top + 0.5, 0, 1) * np.clip(hw_bot - Y + 0.5, 0, 1) * colcov

    # Head: a pan head seen from the side, its dome an ellipse arc.
    rd = lh * rng.uniform(0.45, 0.8)
    xd = x0 + rd
    ux = np.clip((xd - X) / rd, 0, 1)
    hh = dh / 2 * np.sqrt(np.clip(1 - ux * ux, 0, 1))
    a_hd = np.clip(hh - np.abs(Y) + 0.5, 0, 1) * np.clip(xs - X + 0.5, 0, 1) * (X >= x0 - 1)
    alpha = np.maximum(a_sh, a_hd)

    # Shading: a cylinder lit from one side, a specular stripe, the thread as slanted ridges.
    ly = rng.uniform(-0.7, 0.7)
    lz = math.sqrt(1 - ly * ly)
    hy, hz = ly, lz + 1.0
    vs = hy / math.hypot(hy, hz)
    amb, dif = rng.uniform(0.22, 0.38), rng.uniform(0.5, 0.7)
    spw, sw = rng.uniform(0.3, 0.6), rng.uniform(0.12, 0.25)

    v = np.clip(Y / (d / 2), -1, 1)
    nz = np.sqrt(1 - v * v)
    lam = np.clip(v * ly + nz * lz, 0, 1)
    spec = np.exp(-(((v - vs) / sw) ** 2))
    slant = rng.uniform(0.25, 0.5) * pitch / d * (1 if rng.random() < 0.5 else -1)
    t = (X - phase + slant * Y) / pitch
    ridge = 0.5 + 0.5 * np.cos(2 * math.pi * t)
    kth = rng.uniform(0.3, 0.5)
    shank = (amb + dif * lam + spw * spec) * (1 - kth * (1 - ridge) * threaded)
    if bands:
        # Raw, unrolled stock: matte (almost no highlight), darker, grainy.
        dull = rng.uniform(0.65, 0.85)
        grain = 1 + 0.05 * rng.standard_normal((hc, wc)).astype(np.float32)
        raw = (amb + dif * dull * lam + 0.12 * spw * spec) * grain
        shank = shank * (1 - band_col) + raw * band_col

    vh = np.clip(Y / (dh / 2), -1, 1)
    nzh = np.sqrt(np.clip(1 - vh * vh, 0, 1)) * np.sqrt(np.clip(1 - ux * ux, 0.05, 1))
    head = amb + dif * np.clip(vh * ly + nzh * lz, 0, 1) + spw * np.exp(-(((vh - vs) / sw) ** 2)) * (1 - ux)
    head = head * np.where(np.abs(X - xs) < 1.5 * sc, 0.55, 1.0).astype(np.float32)  # bearing-face edge

    inten = np.where(X < xs, head, shank) * rng.uniform(150, 225)
    tint = rng.uniform(0.94, 1.05, 3).astype(np.float32)
    canvas = np.empty((hc, wc, 4), np.float32)
    pa = inten * alpha
    for c in range(3):
        canvas[:, :, c] = pa * tint[c]
    canvas[:, :, 3] = alpha
    band_maps = [bc[None, :] * a_sh for bc in band_cols]
    return canvas, band_maps


def _draw_scratch(rng, img, inner, inner_idx, sc, boxes):
    """A thin bright line (bare metal) with a dark edge beside it; None when it would not fit."""
    h, w = inner.shape
    length = rng.uniform(22, 55) * sc
    ang = math.radians(rng.uniform(20, 70) + 90 * int(rng.integers(4)))  # never axis-aligned: no sliver boxes
    c = _pick(rng, inner_idx, w)
    if c is None:
        return None
    dx, dy = math.cos(ang), math.sin(ang)
    bend = rng.uniform(-0.12, 0.12) * length
    tt = np.linspace(-0.5, 0.5, 9)
    px = c[0] + tt * length * dx - (1 - 4 * tt * tt) * bend * dy
    py = c[1] + tt * length * dy + (1 - 4 * tt * tt) * bend * dx
    ix, iy = np.round(px).astype(int), np.round(py).astype(int)
    if ix.min() < 0 or iy.min() < 0 or ix.max() >= w or iy.max() >= h or not inner[iy, ix].all():
        return None
    thick = max(1, int(round((1 if rng.random() < 0.6 else 2) * sc)))
    pad = thick + 4
    x0, y0 = int(px.min()) - pad, int(py.min()) - pad
    x1, y1 = int(px.max()) + pad + 1, int(py.max()) + pad + 1
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    m = np.zeros((y1 - y0, x1 - x0), np.uint8)
    ms = np.zeros_like(m)
    pts = np.stack([(px - x0) * 16, (py - y0) * 16], 1).round().astype(np.int32)
    off = np.array([-dy, dx]) * 1.3 * 16 * (1 if rng.random() < 0.5 else -1)
    cv2.polylines(m, [pts], False, 255, thick, cv2.LINE_AA, shift=4)
    cv2.polylines(ms, [(pts + off).round().astype(np.int32)], False, 255, thick, cv2.LINE_AA, shift=4)
    mf, msf = m.astype(np.float32) / 255, ms.astype(np.float32) / 255
    box = _placed_box(np.maximum(mf, msf), x0, y0, boxes, 4 * sc)
    if box is None:
        return None
    roi = img[:, y0:y1, x0:x1]
    roi *= 1 - rng.uniform(0.35, 0.6) * msf * (1 - mf)
    roi += (rng.uniform(235, 255) - roi) * (rng.uniform(0.55, 0.9) * mf)
    return box


def _draw_dent(rng, img, inner, inner_idx, sc, boxes):
    """A small crater: dark on the wall towards the light, a bright crescent on the far wall."""
    h, w = inner.shape
    c = _pick(rng, inner_idx, w)
    if c is None:
        return None
    r = rng.uniform(6, 12) * sc
    rx, ry = r, r * rng.uniform(0.65, 1.0)
    th = rng.uniform(0, math.pi)
    ext = int(math.ceil(rx)) + 2
    x0, y0, x1, y1 = c[0] - ext, c[1] - ext, c[0] + ext + 1, c[1] + ext + 1
    if x0 < 0 or y0 < 0 or x1 > w or y1 > h or not inner[y0 + 2:y1 - 2, x0 + 2:x1 - 2].all():
        return None
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    xx -= c[0]
    yy -= c[1]
    u = (xx * math.cos(th) + yy * math.sin(th)) / rx
    v = (-xx * math.sin(th) + yy * math.cos(th)) / ry
    rr = np.sqrt(u * u + v * v)
    inside = np.clip((1 - rr) * ry + 0.5, 0, 1)
    box = _placed_box(inside, x0, y0, boxes, 4 * sc)
    if box is None:
        return None
    la = rng.uniform(0, 2 * math.pi)
    dot = (xx * math.cos(la) + yy * math.sin(la)) / np.maximum(np.sqrt(xx * xx + yy * yy), 1e-3)
    depth, rim = rng.uniform(0.45, 0.7), rng.uniform(0.3, 0.7)
    shade = -depth * (0.55 + 0.45 * dot) * (1 - 0.3 * rr) + rim * np.clip(-dot, 0, 1) * rr * rr
    img[:, y0:y1, x0:x1] *= 1 + shade * inside
    return box


# Coating anomalies: strongly hued tints (rust, heat-blue, brass, violet) far from the
# near-neutral metal, so "coating" is about colour while the texture shows through.
_COATING_TINTS = np.array(
    [[0.45, 0.9, 1.65], [1.6, 0.95, 0.45], [0.35, 1.15, 1.5], [1.45, 0.55, 1.0]], np.float32
)


def _draw_coating(rng, img, alpha, core_idx, sc, boxes):
    h, w = alpha.shape
    c = _pick(rng, core_idx, w)
    if c is None:
        return None
    rad = rng.uniform(8, 22) * sc
    ext = int(math.ceil(rad * 1.6)) + 2
    x0, y0 = max(0, c[0] - ext), max(0, c[1] - ext)
    x1, y1 = min(w, c[0] + ext + 1), min(h, c[1] + ext + 1)
    m = np.zeros((y1 - y0, x1 - x0), np.uint8)
    for _ in range(int(rng.integers(2, 5))):
        ox, oy = rng.uniform(-0.5, 0.5, 2) * rad
        ax = (int(rad * rng.uniform(0.5, 1.0) * 16), int(rad * rng.uniform(0.35, 0.8) * 16))
        ctr = (int((c[0] - x0 + ox) * 16), int((c[1] - y0 + oy) * 16))
        cv2.ellipse(m, ctr, ax, rng.uniform(0, 180), 0, 360, 255, -1, cv2.LINE_AA, shift=4)
    blob = m.astype(np.float32) / 255
    mf = blob * alpha[y0:y1, x0:x1]
    if (mf > 0.5).sum() < 0.6 * (blob > 0.5).sum():  # mostly off the screw: would be a sliver
        return None
    box = _placed_box(mf, x0, y0, boxes, 4 * sc)
    if box is None:
        return None
    roi = img[:, y0:y1, x0:x1]
    lum = roi.mean(axis=0)
    tint = _COATING_TINTS[int(rng.integers(len(_COATING_TINTS)))] * rng.uniform(0.75, 1.0)
    roi += (lum[None] * tint[:, None, None] - roi) * (rng.uniform(0.6, 0.9) * mf)
    return box


def _pick(rng, idx, width):
    """A random (x, y) among the flat indices `idx` of an image `width` wide, or None."""
    if idx.size == 0:
        return None
    i = int(idx[int(rng.integers(idx.size))])
    return i % width, i // width


def _render_screw(rng, h, w):
    sc = min(h, w) / 384.0
    n_def = int(rng.integers(1, 5))
    classes = [int(c) for c in rng.integers(0, 4, n_def)]
    # At most two unprocessed bands fit a shank; redraw the rest among the surface defects.
    while classes.count(3) > 2:
        classes[classes.index(3)] = int(rng.integers(0, 3))
    n_band = classes.count(3)
    surface = [c for c in classes if c != 3]

    img = _screw_background(rng, h, w, sc)

    theta = rng.uniform(0, 360)
    ltot = rng.uniform(0.5, 0.85) * max(h, w)
    d = ltot * rng.uniform(0.15, 0.21)
    dh = d * rng.uniform(1.55, 1.95)
    cs, sn = abs(math.cos(math.radians(theta))), abs(math.sin(math.radians(theta)))
    margin = 10 * sc
    fit = min((w - 2 * margin) / (ltot * cs + dh * sn), (h - 2 * margin) / (ltot * sn + dh * cs))
    if fit < 1:
        fit *= 0.995  # floating-point slack, so the position range below is never empty
        ltot, d, dh = ltot * fit, d * fit, dh * fit
    bw, bh = ltot * cs + dh * sn, ltot * sn + dh * cs
    cx = rng.uniform(margin + bw / 2, w - margin - bw / 2)
    cy = rng.uniform(margin + bh / 2, h - margin - bh / 2)

    canvas, band_maps = _screw_canvas(rng, ltot, d, dh, n_band, sc)
    hc, wc = canvas.shape[:2]
    M = cv2.getRotationMatrix2D(((wc - 1) / 2.0, (hc - 1) / 2.0), theta, 1.0)
    M[0, 2] += cx - (wc - 1) / 2.0
    M[1, 2] += cy - (hc - 1) / 2.0
    # Warp only into the screw's bounding box: warps of the whole frame dominated the run time.
    corners = np.array([[0, 0, 1], [wc, 0, 1], [0, hc, 1], [wc, hc, 1]], np.float64) @ M.T
    bx0, by0 = max(0, int(corners[:, 0].min()) - 2), max(0, int(corners[:, 1].min()) - 2)
    bx1, by1 = min(w, int(corners[:, 0].max()) + 3), min(h, int(corners[:, 1].max()) + 3)
    Mr = M.copy()
    Mr[0, 2] -= bx0
    Mr[1, 2] -= by0
    size = (bx1 - bx0, by1 - by0)
    warped = cv2.warpAffine(canvas, Mr, size, flags=cv2.INTER_LINEAR, borderValue=0)
    alpha = np.zeros((h, w), np.float32)
    alpha[by0:by1, bx0:bx1] = warped[:, :, 3]

    # Soft contact shadow, computed at quarter resolution: it only has to be blurry.
    small = cv2.resize(alpha, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA)
    sh = cv2.GaussianBlur(small, (0, 0), rng.uniform(1.5, 3.5))
    S = np.float32([[1, 0, rng.uniform(-3, 3)], [0, 1, rng.uniform(-3, 3)]])
    sh = cv2.warpAffine(sh, S, (small.shape[1], small.shape[0]))
    sh = cv2.resize(sh, (w, h), interpolation=cv2.INTER_LINEAR)
    img *= 1 - rng.uniform(0.2, 0.45) * sh
    roi = img[:, by0:by1, bx0:bx1]
    roi *= 1 - alpha[by0:by1, bx0:bx1]
    for c in range(3):
        roi[c] += warped[:, :, c]

    boxes = []
    labelled = []
    for bm in band_maps:
        wb = cv2.warpAffine(bm, Mr, size, flags=cv2.INTER_LINEAR, borderValue=0)
        box = _placed_box(wb, bx0, by0, boxes, 4 * sc)
        if box is not None:
            boxes.append(box)
            labelled.append((3,) + box)

    inside = (alpha > 0.5).astype(np.uint8)
    k = 2 * max(2, int(round(3 * sc))) + 1
    inner = cv2.erode(inside, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))) > 0
    inner_idx = np.flatnonzero(inner)
    core_idx = np.flatnonzero(alpha > 0.9)
    draw = {0: lambda: _draw_scratch(rng, img, inner, inner_idx, sc, boxes),
            1: lambda: _draw_dent(rng, img, inner, inner_idx, sc, boxes),
            2: lambda: _draw_coating(rng, img, alpha, core_idx, sc, boxes)}
    for cls in surface:
        for _try in range(25):
            box = draw[cls]()
            if box is not None:
                boxes.append(box)
                labelled.append((cls,) + box)
                break
    return _finish(rng, img, (0.08, 0.3)), labelled


# ----------------------------------------------------------------------------- pcb


class _Frame:
    """Bus-local coordinates: `along` the traces and `across` them, for horizontal or vertical buses."""

    def __init__(self, vertical):
        self.vertical = vertical

    def pts(self, along_across):
        p = np.asarray(along_across, np.float64)
        return p[:, ::-1].copy() if self.vertical else p

    def rect(self, layer, a0, a1, c0, c1, value=255):
        """Fill along [a0, a1) x across [c0, c1)."""
        if self.vertical:
            layer[int(a0):int(a1), int(c0):int(c1)] = value
        else:
            layer[int(c0):int(c1), int(a0):int(a1)] = value

    def poly(self, layer, along_across, value):
        cv2.fillPoly(layer, [np.round(self.pts(along_across)).astype(np.int32)], value)


def _split_regions(rng, x0, y0, x1, y1, min_side, target):
    regs = [(x0, y0, x1, y1)]
    while len(regs) < target:
        regs.sort(key=lambda r: (r[2] - r[0]) * (r[3] - r[1]), reverse=True)
        for i, (a, b, c, d) in enumerate(regs):
            if max(c - a, d - b) >= 2 * min_side:
                break
        else:
            break
        a, b, c, d = regs.pop(i)
        f = rng.uniform(0.38, 0.62)
        if c - a >= d - b:
            m = int(a + (c - a) * f)
            regs += [(a, b, m, d), (m, b, c, d)]
        else:
            m = int(b + (d - b) * f)
            regs += [(a, b, c, m), (a, m, c, d)]
    return regs


class _Board:
    def __init__(self, h, w, sc):
        self.h, self.w, self.sc = h, w, sc
        self.trace = np.zeros((h, w), np.uint8)  # copper under the solder mask
        self.pad = np.zeros((h, w), np.uint8)  # exposed plated copper
        self.body = np.zeros((h, w), np.uint8)  # component bodies
        self.silk = np.zeros((h, w), np.uint8)
        self.segs = []  # straight trace runs where defects may go
        self.pairs = []  # neighbouring runs of one bus (for shorts)
        self.holes = []  # round pads: [x, y, r, hole_r, drilled]

    def round_pad(self, x, y, r, hole_r):
        cv2.circle(self.pad, (int(x), int(y)), int(r), 255, -1)
        self.holes.append([int(x), int(y), int(r), int(hole_r), True])

    def bus(self, rng, reg):
        sc = self.sc
        x0, y0, x1, y1 = reg
        fr = _Frame(vertical=(y1 - y0) > (x1 - x0))
        A0, A1, C0, C1 = (y0, y1, x0, x1) if fr.vertical else (x0, x1, y0, y1)
        t = max(3, int(round(rng.uniform(6, 12) * sc)))
        gap = max(8, int(round(rng.uniform(12, 22) * sc)))
        pitch = t + gap
        pd = max(t + 4, min(int(t * rng.uniform(1.7, 2.3)), pitch - 4))
        nmax = (C1 - C0 - pd) // pitch + 1
        if nmax < 1 or A1 - A0 < 80 * sc:
            return
        n = int(rng.integers(min(2, nmax), min(nmax, 6) + 1))
        span = (n - 1) * pitch + pd
        room = C1 - C0 - span
        a_s, a_e = A0 + pd // 2 + 2, A1 - pd // 2 - 2
        jog = 0
        if rng.random() < 0.4 and a_e - a_s > 200 * sc and room > 0.6 * pitch:
            jog = int(rng.uniform(0.5, min(1.5, room / pitch)) * pitch) * (1 if rng.random() < 0.5 else -1)
        c_start = C0 + int(rng.uniform(0, room - abs(jog) + 1)) + pd // 2 + (abs(jog) if jog < 0 else 0)
        aj = int(a_s + (a_e - a_s) * rng.uniform(0.3, 0.6))
        drilled = rng.random() < 0.65
        trim_pad = pd + int(4 * sc)
        runs = []  # per part: list of segment dicts
        for i in range(n):
            c = c_start + i * pitch
            top = c - t // 2
            if jog:
                fr.rect(self.trace, a_s, aj, top, top + t)
                fr.rect(self.trace, aj + abs(jog), a_e, top + jog, top + jog + t)
                p = fr.pts([(aj, c), (aj + abs(jog), c + jog)])
                cv2.line(self.trace, tuple(int(v) for v in p[0]), tuple(int(v) for v in p[1]), 255, t)
                parts = [(a_s + trim_pad, aj - 2 * t, top), (aj + abs(jog) + 2 * t, a_e - trim_pad, top + jog)]
            else:
                fr.rect(self.trace, a_s, a_e, top, top + t)
                parts = [(a_s + trim_pad, a_e - trim_pad, top)]
            ends = [(a_s, c), (a_e, c + jog)]
            for ea, ec in ends:
                ex, ey = fr.pts([(ea, ec)])[0]
                if drilled:
                    self.round_pad(ex, ey, pd // 2, max(2, int(pd / 2 * rng.uniform(0.35, 0.5))))
                else:
                    fr.rect(self.pad, ea - pd // 2, ea + pd // 2 + 1, ec - pd // 2, ec + pd // 2 + 1)
            for k, (a0, a1, tp) in enumerate(parts):
                if a1 - a0 < 24 * sc:
                    continue
                lo = gap if i > 0 else min(int(24 * sc), tp - C0)
                hi = gap if i < n - 1 else min(int(24 * sc), C1 - (tp + t))
                seg = {"fr": fr, "a0": a0, "a1": a1, "c0": tp, "t": t, "lo": lo, "hi": hi, "part": k, "i": i}
                self.segs.append(seg)
                runs.append(seg)
        for s in runs:
            for s2 in runs:
                if s2["i"] == s["i"] + 1 and s2["part"] == s["part"]:
                    self.pairs.append((s, s2))

    def header(self, rng, reg):
        sc = self.sc
        x0, y0, x1, y1 = reg
        ph = int(rng.uniform(22, 34) * sc)
        d = int(ph * rng.uniform(0.5, 0.68))
        short, long_ = int(rng.integers(1, 4)), int(rng.integers(3, 13))
        rows, cols = (long_, short) if (y1 - y0) > (x1 - x0) else (short, long_)  # a strip along the region
        rows = min(rows, (y1 - y0 - ph) // ph)
        cols = min(cols, (x1 - x0 - ph) // ph)
        if rows < 1 or cols < 1:
            return
        gx = x0 + ph // 2 + int(rng.uniform(0, (x1 - x0) - cols * ph + 1))
        gy = y0 + ph // 2 + int(rng.uniform(0, (y1 - y0) - rows * ph + 1))
        hr = max(2, int(d / 2 * rng.uniform(0.35, 0.5)))
        for r in range(rows):
            for c in range(cols):
                self.round_pad(gx + c * ph, gy + r * ph, d // 2, hr)
        th = max(1, int(round(2 * sc)))
        m = ph // 2 - 1
        cv2.rectangle(self.silk, (gx - m, gy - m), (gx + (cols - 1) * ph + m, gy + (rows - 1) * ph + m), 255, th)

    def ic(self, rng, reg):
        sc = self.sc
        x0, y0, x1, y1 = reg
        pp = int(rng.uniform(14, 22) * sc)
        pw = max(3, int(pp * rng.uniform(0.45, 0.6)))
        pl = int(rng.uniform(14, 24) * sc)
        bh = int(rng.uniform(30, 70) * sc)
        npin = min(int(rng.integers(3, 11)), (x1 - x0 - 2 * pp) // pp)
        if npin < 2 or y1 - y0 < bh + 2 * pl + 8 * sc:
            return
        width = npin * pp
        bx = x0 + pp + int(rng.uniform(0, (x1 - x0) - 2 * pp - width + 1))
        by = y0 + pl + int(rng.uniform(0, (y1 - y0) - 2 * pl - bh + 1))
        for k in range(npin):
            px = bx + k * pp + (pp - pw) // 2
            cv2.rectangle(self.pad, (px, by - pl), (px + pw - 1, by - 3), 255, -1)
            cv2.rectangle(self.pad, (px, by + bh + 2), (px + pw - 1, by + bh + pl - 1), 255, -1)
        cv2.rectangle(self.body, (bx + 2, by + 3), (bx + width - 3, by + bh - 3), 255, -1)
        th = max(1, int(round(2 * sc)))
        cv2.rectangle(self.silk, (bx - 3, by), (bx + width + 2, by + bh), 255, th)
        cv2.circle(self.silk, (bx + int(6 * sc), by + bh - int(8 * sc)), max(2, int(3 * sc)), 255, -1)

    def vias(self, rng, reg):
        sc = self.sc
        x0, y0, x1, y1 = reg
        placed = []
        for _ in range(int(rng.integers(0, 6))):
            r = int(rng.uniform(5, 7.5) * sc)
            x, y = int(rng.uniform(x0 + r, x1 - r)), int(rng.uniform(y0 + r, y1 - r))
            if all(abs(x - a) + abs(y - b) > 6 * r for a, b in placed):
                placed.append((x, y))
                self.round_pad(x, y, r, max(2, int(r * 0.45)))

    def text(self, rng, reg):
        x0, y0, x1, y1 = reg
        if x1 - x0 < 60 * self.sc or y1 - y0 < 30 * self.sc:
            return
        label = "{}{}".format("RCUJDQ"[int(rng.integers(6))], int(rng.integers(1, 40)))
        scale = 0.45 * self.sc
        cv2.putText(self.silk, label, (x0 + 2, y1 - 3), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, max(1, int(self.sc)))


def _changed_box(before, after, x0, y0):
    box = _mask_box((before != after).astype(np.uint8))
    return None if box is None else _shift_box(box, x0, y0)


def _seg_roi(seg, a0, a1, pad, h, w):
    """Image ROI (x0, y0, x1, y1) around along [a0, a1) of `seg`, `pad` pixels wider across."""
    c0, c1 = seg["c0"] - pad, seg["c0"] + seg["t"] + pad
    if seg["fr"].vertical:
        x0, x1, y0, y1 = c0, c1, a0, a1
    else:
        x0, x1, y0, y1 = a0, a1, c0, c1
    return max(0, int(x0)), max(0, int(y0)), min(w, int(x1)), min(h, int(y1))


def _edit(layer, roi, fn):
    """Apply `fn(layer)` and return the box of the pixels of `roi` it changed."""
    x0, y0, x1, y1 = roi
    before = layer[y0:y1, x0:x1].copy()
    fn(layer)
    return _changed_box(before, layer[y0:y1, x0:x1], x0, y0)


def _pcb_defect(rng, b, cls, boxes, free):
    sc, h, w = b.sc, b.h, b.w
    if cls == 0:  # missing_hole: a round pad left undrilled
        cands = [p for p in b.holes if p[4] and p[2] >= 5]
        if not cands:
            return None
        p = cands[int(rng.integers(len(cands)))]
        x, y, r = p[0], p[1], p[2]
        x0, y0 = max(0, x - r - 2), max(0, y - r - 2)
        box = _placed_box(b.pad[y0:y + r + 3, x0:x + r + 3], x0, y0, boxes, 6 * sc)
        if box is None:
            return None
        p[4] = False
        return box
    if cls == 5:  # spurious_copper: an isolated blob in bare board
        c = _pick(rng, free, w)
        if c is None:
            return None
        rad = rng.uniform(5, 13) * sc
        k = int(rng.integers(5, 10))
        ang = np.sort(rng.uniform(0, 2 * math.pi, k))
        rr = rad * rng.uniform(0.55, 1.0, k)
        poly = np.stack([c[0] + rr * np.cos(ang), c[1] + rr * np.sin(ang)], 1)
        e = int(rad) + 3
        roi = (max(0, c[0] - e), max(0, c[1] - e), min(w, c[0] + e + 1), min(h, c[1] + e + 1))
        x0, y0, x1, y1 = roi
        before = b.trace[y0:y1, x0:x1].copy()
        tmp = before.copy()
        cv2.fillPoly(tmp, [np.round(poly - (x0, y0)).astype(np.int32)], 255)
        box = _changed_box(before, tmp, x0, y0)
        if box is None or min(box[2] - box[0], box[3] - box[1]) < 4 or not _clear_of(box, boxes, 6 * sc):
            return None
        b.trace[y0:y1, x0:x1] = tmp
        return box
    if cls == 3:  # short: a copper bridge across the gap between neighbouring traces
        if not b.pairs:
            return None
        s1, s2 = b.pairs[int(rng.integers(len(b.pairs)))]
        lo, hi = max(s1["a0"], s2["a0"]), min(s1["a1"], s2["a1"])
        bw = max(3, int(rng.uniform(5, 11) * sc))
        dx = int(rng.uniform(-0.8, 0.8) * bw)
        if hi - lo < bw + abs(dx) + 2:
            return None
        a = int(rng.uniform(lo + max(0, -dx), hi - bw - max(0, dx)))
        e1, e2 = s1["c0"] + s1["t"] - 1, s2["c0"]
        quad = [(a, e1), (a + bw, e1), (a + bw + dx, e2 + 1), (a + dx, e2 + 1)]
        fr = s1["fr"]
        roi = _seg_roi(s1, a - abs(dx) - 2, a + bw + abs(dx) + 3, s2["c0"] + s2["t"] - s1["c0"], h, w)
        return _commit(b.trace, roi, lambda L: fr.poly(L, quad, 255), boxes, sc)
    segs = b.segs
    if not segs:
        return None
    s = segs[int(rng.integers(len(segs)))]
    fr, t, c0 = s["fr"], s["t"], s["c0"]
    if cls == 2:  # open_circuit: a cut right through one trace, ends possibly slanted
        g = max(4, int(rng.uniform(7, 16) * sc))
        sl = int(rng.uniform(-0.5, 0.5) * t)
        if s["a1"] - s["a0"] < g + abs(sl) + 2:
            return None
        a = int(rng.uniform(s["a0"] + max(0, -sl), s["a1"] - g - max(0, sl)))
        quad = [(a, c0 - 1), (a + g, c0 - 1), (a + g + sl, c0 + t), (a + sl, c0 + t)]
        roi = _seg_roi(s, a - abs(sl) - 2, a + g + abs(sl) + 3, 2, h, w)
        return _commit(b.trace, roi, lambda L: fr.poly(L, quad, 0), boxes, sc)
    if cls == 1:  # mouse_bite: a row of round nibbles out of a trace edge
        r = max(3, int(round(t * rng.uniform(0.3, 0.5))))
        nb = int(rng.integers(2, 5))
        step = r * rng.uniform(1.3, 2.0)
        span = (nb - 1) * step + 2 * r
        if s["a1"] - s["a0"] < span + 2:
            return None
        a = rng.uniform(s["a0"], s["a1"] - span)
        side = rng.random() < 0.5
        mixed = rng.random() < 0.25

        roi = _seg_roi(s, int(a) - 2, int(a + span) + 3, r + 1, h, w)
        x0, y0, x1, y1 = roi
        before = b.trace[y0:y1, x0:x1]
        work = before.copy()
        for k in range(nb):
            up = side if not (mixed and k % 2) else not side
            p = fr.pts([(a + r + k * step, c0 if up else c0 + t - 1)])[0]
            cv2.circle(work, (int(round(p[0])) - x0, int(round(p[1])) - y0), r, 0, -1)
        box = _changed_box(before, work, x0, y0)
        if box is None:
            return None
        # The box spans the whole damaged stretch of the trace, not only the bitten edge.
        full = _seg_roi(s, 0, 0, 0, h, w)
        if fr.vertical:
            box = (full[0], box[1], full[2], box[3])
        else:
            box = (box[0], full[1], box[2], full[3])
        if not _clear_of(box, boxes, 6 * sc):
            return None
        b.trace[y0:y1, x0:x1] = work
        return box
    if cls == 4:  # spur: a copper spike from a trace edge into free space
        up = rng.random() < 0.5
        room = s["lo"] if up else s["hi"]
        ln = int(min(rng.uniform(7, 16) * sc, room - 4 * sc))
        if ln < 4:
            return None
        wb = max(3, int(rng.uniform(5, 11) * sc))
        wt = rng.uniform(1, 3)
        off = rng.uniform(-0.6, 0.6) * wb
        if s["a1"] - s["a0"] < wb + 2 * abs(off) + 4:
            return None
        a = rng.uniform(s["a0"] + abs(off) + 1, s["a1"] - wb - abs(off) - 1)
        edge, tipc = (c0, c0 - ln) if up else (c0 + t - 1, c0 + t - 1 + ln)
        mid = a + wb / 2 + off
        poly = [(a, edge), (a + wb, edge), (mid + wt / 2, tipc), (mid - wt / 2, tipc)]
        roi = _seg_roi(s, int(a - abs(off)) - 2, int(a + wb + abs(off)) + 3, ln + 2, h, w)
        return _commit(b.trace, roi, lambda L: fr.poly(L, poly, 255), boxes, sc)
    return None


def _commit(layer, roi, fn, boxes, sc):
    """Try `fn` on a copy of the ROI; keep it only if it changed pixels clear of other defects."""
    x0, y0, x1, y1 = roi
    if x1 <= x0 or y1 <= y0:
        return None
    saved = layer[y0:y1, x0:x1].copy()
    box = _edit(layer, roi, fn)
    if box is None or not _clear_of(box, boxes, 6 * sc):
        layer[y0:y1, x0:x1] = saved
        return None
    return box


def _render_pcb(rng, h, w):
    sc = min(h, w) / 640.0
    b = _Board(h, w, sc)
    m = int(12 * sc)
    regs = _split_regions(rng, m, m, w - m, h - m, int(110 * sc), int(rng.integers(4, 8)))
    regs.sort(key=lambda r: (r[2] - r[0]) * (r[3] - r[1]), reverse=True)
    inset = int(8 * sc)
    for k, (x0, y0, x1, y1) in enumerate(regs):
        reg = (x0 + inset, y0 + inset, x1 - inset, y1 - inset)
        kind = "bus" if k == 0 else ("bus", "bus", "bus", "header", "ic", "vias")[int(rng.integers(6))]
        if kind == "bus":
            b.bus(rng, reg)
        elif kind == "header":
            b.header(rng, reg)
            b.text(rng, reg)
        elif kind == "ic":
            b.ic(rng, reg)
            b.text(rng, reg)
        else:
            b.vias(rng, reg)

    n_def = int(rng.integers(1, 5))
    classes = [int(c) for c in rng.integers(0, 6, n_def)]
    free = None
    if 5 in classes:
        occ = cv2.bitwise_or(cv2.bitwise_or(b.trace, b.pad), cv2.bitwise_or(b.silk, b.body))
        k = 2 * int(18 * sc) + 1
        occ = cv2.dilate(occ, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
        e = int(20 * sc)
        occ[:e], occ[-e:], occ[:, :e], occ[:, -e:] = 255, 255, 255, 255
        free = np.flatnonzero(occ == 0)
    boxes, labelled = [], []
    for cls in classes:
        for _try in range(20):
            box = _pcb_defect(rng, b, cls, boxes, free)
            if box is not None:
                boxes.append(box)
                labelled.append((cls,) + box)
                break

    holes = np.zeros((h, w), np.uint8)
    for x, y, _r, hr, drilled in b.holes:
        if drilled:
            cv2.circle(holes, (x, y), hr, 255, -1)
    # Layer codes rise with drawing priority, so the label map is a per-pixel max of the masks
    # (each 0/255, ANDed down to its code).
    L = cv2.bitwise_and(b.trace, 1)
    for code, layer in ((2, b.pad), (3, holes), (4, b.body), (5, b.silk)):
        L = cv2.max(L, cv2.bitwise_and(layer, code))

    board = np.array([rng.uniform(25, 70), rng.uniform(85, 140), rng.uniform(15, 55)])
    lift = [rng.uniform(0, 10), rng.uniform(15, 35), rng.uniform(10, 30)]
    trace = np.clip(board * rng.uniform(1.25, 1.5) + lift, 0, 255)
    if rng.random() < 0.6:
        pad = np.array([rng.uniform(40, 80), rng.uniform(150, 190), rng.uniform(190, 230)])  # gold
    else:
        pad = np.full(3, rng.uniform(165, 210))  # tin (HASL)
    palette = np.zeros((256, 3), np.uint8)
    palette[0], palette[1], palette[2] = board, trace, pad
    palette[3] = rng.uniform(12, 45)
    palette[4] = rng.uniform(20, 45)
    palette[5] = rng.uniform(200, 245)
    blur = rng.uniform(0.5, 0.9)
    tex = _noise_field(rng, h, w, max(8, int(64 * sc))) * rng.uniform(3, 8)
    planes = np.empty((3, h, w), np.float32)
    for c in range(3):
        p = cv2.GaussianBlur(cv2.LUT(L, palette[:, c].copy()), (3, 3), blur)
        np.add(p, tex, out=planes[c], dtype=np.float32)
    out = _finish(rng, planes, (0.05, 0.25))

    # Flips (and, on square images, transposes) are free variety for the layout.
    if h == w and rng.random() < 0.5:
        out = cv2.transpose(out)
        labelled = [(c, y1, x1, y2, x2) for c, x1, y1, x2, y2 in labelled]
    if rng.random() < 0.5:
        out = cv2.flip(out, 1)
        labelled = [(c, w - x2, y1, w - x1, y2) for c, x1, y1, x2, y2 in labelled]
    if rng.random() < 0.5:
        out = cv2.flip(out, 0)
        labelled = [(c, x1, h - y2, x2, h - y1) for c, x1, y1, x2, y2 in labelled]
    return out, labelled


# ----------------------------------------------------------------------------- public API


def _check_imgsz(kind, imgsz):
    if imgsz is None:
        return DEFAULT_IMGSZ[kind]
    if isinstance(imgsz, int):
        imgsz = (imgsz, imgsz)
    h, w = (int(v) for v in imgsz)
    if h < _MIN_SIDE or w < _MIN_SIDE:
        raise UserInputError("--imgsz {} {}: both sides must be at least {} pixels".format(h, w, _MIN_SIDE))
    return h, w


def generate(kind, index, seed=0, imgsz=None):
    """One synthetic image and its labels.

    Returns (image HxWx3 uint8 BGR, labels (N, 5) float64 rows [class, cx, cy, w, h] normalised
    to [0, 1]). Deterministic in (kind, index, seed, imgsz).
    """
    if kind not in KINDS:
        raise UserInputError("unknown dataset kind {!r}: choose one of {}".format(kind, ", ".join(sorted(KINDS))))
    if int(seed) < 0 or int(index) < 0:
        raise UserInputError("--seed and the image index must be non-negative integers")
    h, w = _check_imgsz(kind, imgsz)
    rng = np.random.default_rng([GENERATOR_VERSION, _KIND_CODE[kind], int(seed), int(index)])
    render = _render_screw if kind == "screw" else _render_pcb
    for _attempt in range(20):  # a layout with no room for any defect is rare; draw another
        img, boxes = render(rng, h, w)
        if boxes:
            break
    return img, _to_labels(boxes, h, w)


def format_labels(labels):
    """YOLO label-file text: one `cls cx cy w h` line per object, 6 decimals."""
    return "".join("{:d} {:.6f} {:.6f} {:.6f} {:.6f}\n".format(int(r[0]), r[1], r[2], r[3], r[4]) for r in labels)


def data_yaml(path, names, train="images/train", val="images/val", comment=None):
    """data.yaml text (the Ultralytics layout) written without a YAML library.

    Strings are emitted JSON-quoted, which YAML reads as double-quoted scalars, so any path or
    class name round-trips.
    """
    lines = ["# " + comment] if comment else []
    lines += [
        "path: " + json.dumps(str(path)),
        "train: " + json.dumps(train),
        "val: " + json.dumps(val),
        "nc: {:d}".format(len(names)),
        "names: [" + ", ".join(json.dumps(n) for n in names) + "]",
    ]
    return "\n".join(lines) + "\n"


# Every file write_dataset writes; anything else in a folder means the user put it there.
_OUR_FILES = re.compile(r"^(data\.yaml|synth\.json|images/(train|val)/[a-z]+_\d{6}\.(png|jpg)|labels/(train|val)/[a-z]+_\d{6}\.txt)$")


def our_dataset(folder):
    """For atomic_dir: None when `folder` may be replaced (empty, or a synthetic dataset of ours and nothing
    else), else the reason it may not."""
    if not os.listdir(folder):
        return None
    if not os.path.isfile(os.path.join(folder, "synth.json")):
        return "it is not a dataset written by `defectrt data synth` (no synth.json)"
    return describe_foreign(foreign_entries(folder, lambda rel: bool(_OUR_FILES.match(rel)) or is_temporary(rel)),
                            "a synthetic dataset")


def write_dataset(out, kind="screw", n=500, imgsz=None, seed=0, val_fraction=0.2, fmt="png", force=False,
                  progress=True):
    """Generate a dataset into folder `out` (replaced only with `force`); returns a summary dict.

    Images 0 .. n_train-1 go to train, the rest to val, n_val = round(n * val_fraction) (at least
    one when val_fraction > 0 and n > 1). The folder appears only once complete.
    """
    if kind not in KINDS:
        raise UserInputError("unknown dataset kind {!r}: choose one of {}".format(kind, ", ".join(sorted(KINDS))))
    if int(n) < 1:
        raise UserInputError("--n {}: generate at least one image".format(n))
    if not 0 <= float(val_fraction) < 1:
        raise UserInputError("--val-fraction {}: use a value in [0, 1)".format(val_fraction))
    if fmt not in ("png", "jpg"):
        raise UserInputError("--format {}: use png or jpg".format(fmt))
    if int(seed) < 0:
        raise UserInputError("--seed {}: use a non-negative integer".format(seed))
    h, w = _check_imgsz(kind, imgsz)
    n = int(n)
    n_val = int(round(n * float(val_fraction)))
    if val_fraction > 0 and n > 1:
        n_val = min(max(n_val, 1), n - 1)
    n_train = n - n_val
    names = KINDS[kind]
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1] if fmt == "png" else [cv2.IMWRITE_JPEG_QUALITY, 95]
    counts = [0] * len(names)
    gen_s = 0.0
    t0 = time.perf_counter()
    out = os.path.abspath(os.fspath(out))
    with atomic_dir(out, force=force, ours=our_dataset) as tmp:
        for split in ("train", "val"):
            os.makedirs(os.path.join(tmp, "images", split))
            os.makedirs(os.path.join(tmp, "labels", split))
        it = range(n)
        if progress:
            from tqdm import tqdm

            it = tqdm(it, desc="synth " + kind, unit="img")
        for i in it:
            split = "train" if i < n_train else "val"
            tg = time.perf_counter()
            img, labels = generate(kind, i, seed, (h, w))
            gen_s += time.perf_counter() - tg
            stem = "{}_{:06d}".format(kind, i)
            ok, buf = cv2.imencode("." + fmt, img, params)
            if not ok:
                raise RuntimeError("OpenCV could not encode " + fmt)
            with open(os.path.join(tmp, "images", split, stem + "." + fmt), "wb") as f:
                f.write(buf.tobytes())
            with open(os.path.join(tmp, "labels", split, stem + ".txt"), "w", newline="\n") as f:
                f.write(format_labels(labels))
            for c in labels[:, 0].astype(int):
                counts[c] += 1
        summary = {
            "kind": kind,
            "generator_version": GENERATOR_VERSION,
            "seed": int(seed),
            "imgsz": [h, w],
            "format": fmt,
            "train": n_train,
            "val": n_val,
            "names": list(names),
            "instances": dict(zip(names, counts)),
        }
        comment = "defectrt synthetic {} dataset, seed {}, {}x{}, generator v{}".format(kind, seed, h, w,
                                                                                    GENERATOR_VERSION)
        with open(os.path.join(tmp, "data.yaml"), "w", newline="\n") as f:
            f.write(data_yaml(out, names, comment=comment))
        with open(os.path.join(tmp, "synth.json"), "w", newline="\n") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")
    summary["path"] = out
    summary["seconds"] = time.perf_counter() - t0
    summary["ms_per_image_generate"] = 1000.0 * gen_s / n
    return summary
