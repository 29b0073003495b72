"""The `screw` generator: a metal screw on a textured conveyor, with four defect classes.

A shaded head and threaded shank in a random pose, scale and position; `unprocessed` bands are part of
the screw's own rendering (stretches of the shank without thread), the surface defects (`scratch`,
`dent`, `coating`) are painted onto the finished screw by one painter each.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from defectrt.data.synth.common import finish, noise_field, pick, placed_box

NAMES = ("scratch", "dent", "coating", "unprocessed")
SCRATCH, DENT, COATING, UNPROCESSED = range(4)
DEFAULT_IMGSZ = (384, 672)  # H x W: the aspect of a line-scan style inspection camera


def background(rng, h, w, sc):
    # Built at half resolution, then upsampled once: it is all texture no finer than ~4 pixels.
    hs, ws = max(1, h // 2), max(1, w // 2)
    base = rng.uniform(30, 140) * rng.uniform(0.92, 1.08, 3).astype(np.float32)
    tex = noise_field(rng, hs, ws, max(4, int(24 * sc))) * rng.uniform(3, 10)
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


def screw_canvas(rng, ltot, d, dh, n_band, sc):
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


def paint_scratch(rng, img, inner, inner_idx, sc, boxes):
    """A thin bright line (bare metal) with a dark edge beside it; None when it would not fit."""
    h, w = inner.shape
    length = rng.uniform(22, 55) * sc
    ang = math.radians(rng.uniform(20, 70) + 90 * int(rng.integers(4)))  # never axis-aligned: no sliver boxes
    c = pick(rng, inner_idx, w)
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
    box = placed_box(np.maximum(mf, msf), x0, y0, boxes, 4 * sc)
    if box is None:
        return None
    roi = img[:, y0:y1, x0:x1]
    roi *= 1 - rng.uniform(0.35, 0.6) * msf * (1 - mf)
    roi += (rng.uniform(235, 255) - roi) * (rng.uniform(0.55, 0.9) * mf)
    return box


def paint_dent(rng, img, inner, inner_idx, sc, boxes):
    """A small crater: dark on the wall towards the light, a bright crescent on the far wall."""
    h, w = inner.shape
    c = pick(rng, inner_idx, w)
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
    box = placed_box(inside, x0, y0, boxes, 4 * sc)
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


def paint_coating(rng, img, alpha, core_idx, sc, boxes):
    h, w = alpha.shape
    c = pick(rng, core_idx, w)
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
    box = placed_box(mf, x0, y0, boxes, 4 * sc)
    if box is None:
        return None
    roi = img[:, y0:y1, x0:x1]
    lum = roi.mean(axis=0)
    tint = _COATING_TINTS[int(rng.integers(len(_COATING_TINTS)))] * rng.uniform(0.75, 1.0)
    roi += (lum[None] * tint[:, None, None] - roi) * (rng.uniform(0.6, 0.9) * mf)
    return box


def render(rng, h, w):
    """-> (BGR uint8 image, [(class, x1, y1, x2, y2)] pixel boxes) of one screw image."""
    sc = min(h, w) / 384.0
    n_def = int(rng.integers(1, 5))
    classes = [int(c) for c in rng.integers(0, 4, n_def)]
    # At most two unprocessed bands fit a shank; redraw the rest among the surface defects.
    while classes.count(UNPROCESSED) > 2:
        classes[classes.index(UNPROCESSED)] = int(rng.integers(0, 3))
    n_band = classes.count(UNPROCESSED)
    surface = [c for c in classes if c != UNPROCESSED]

    img = background(rng, h, w, sc)

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

    canvas, band_maps = screw_canvas(rng, ltot, d, dh, n_band, sc)
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
        box = placed_box(wb, bx0, by0, boxes, 4 * sc)
        if box is not None:
            boxes.append(box)
            labelled.append((UNPROCESSED,) + box)

    inside = (alpha > 0.5).astype(np.uint8)
    k = 2 * max(2, int(round(3 * sc))) + 1
    inner = cv2.erode(inside, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))) > 0
    inner_idx = np.flatnonzero(inner)
    core_idx = np.flatnonzero(alpha > 0.9)
    paint = {SCRATCH: lambda: paint_scratch(rng, img, inner, inner_idx, sc, boxes),
             DENT: lambda: paint_dent(rng, img, inner, inner_idx, sc, boxes),
             COATING: lambda: paint_coating(rng, img, alpha, core_idx, sc, boxes)}
    for cls in surface:
        for _try in range(25):
            box = paint[cls]()
            if box is not None:
                boxes.append(box)
                labelled.append((cls,) + box)
                break
    return finish(rng, img, (0.08, 0.3)), labelled
