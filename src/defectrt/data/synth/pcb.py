"""The `pcb` generator: a bare board with the six PKU-PCB defect classes, one painter per class.

Green solder mask, copper traces in buses, pads, drilled holes, silkscreen and IC bodies are drawn into
per-layer masks (`Board`); each defect painter edits those masks, and its box is measured from the pixels
it changed; the layers are coloured and given the camera look at the end.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from defectrt.data.synth.common import clear_of, finish, mask_box, noise_field, pick, placed_box, shift_box

NAMES = ("missing_hole", "mouse_bite", "open_circuit", "short", "spur", "spurious_copper")
MISSING_HOLE, MOUSE_BITE, OPEN_CIRCUIT, SHORT, SPUR, SPURIOUS_COPPER = range(6)
DEFAULT_IMGSZ = (640, 640)


class Frame:
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


def split_regions(rng, x0, y0, x1, y1, min_side, target):
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


class Board:
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
        fr = Frame(vertical=(y1 - y0) > (x1 - x0))
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


def changed_box(before, after, x0, y0):
    box = mask_box((before != after).astype(np.uint8))
    return None if box is None else shift_box(box, x0, y0)


def segment_roi(seg, a0, a1, pad, h, w):
    """Image ROI (x0, y0, x1, y1) around along [a0, a1) of `seg`, `pad` pixels wider across."""
    c0, c1 = seg["c0"] - pad, seg["c0"] + seg["t"] + pad
    if seg["fr"].vertical:
        x0, x1, y0, y1 = c0, c1, a0, a1
    else:
        x0, x1, y0, y1 = a0, a1, c0, c1
    return max(0, int(x0)), max(0, int(y0)), min(w, int(x1)), min(h, int(y1))


def edit_box(layer, roi, fn):
    """Apply `fn(layer)` and return the box of the pixels of `roi` it changed."""
    x0, y0, x1, y1 = roi
    before = layer[y0:y1, x0:x1].copy()
    fn(layer)
    return changed_box(before, layer[y0:y1, x0:x1], x0, y0)

# ----------------------------------------------------------------------------- painters, one per defect class
# Each takes (rng, board, boxes so far, free bare-board pixel indices or None) and returns the defect's
# pixel box, or None when this try does not fit (the caller tries again). The three trace defects first
# draw the trace they damage (pick_segment), the others draw nothing before their own parameters.


def paint_missing_hole(rng, board, boxes, free):
    """A round pad left undrilled."""
    drilled = [pad for pad in board.holes if pad[4] and pad[2] >= 5]
    if not drilled:
        return None
    pad = drilled[int(rng.integers(len(drilled)))]
    x, y, r = pad[0], pad[1], pad[2]
    x0, y0 = max(0, x - r - 2), max(0, y - r - 2)
    box = placed_box(board.pad[y0:y + r + 3, x0:x + r + 3], x0, y0, boxes, 6 * board.sc)
    if box is None:
        return None
    pad[4] = False
    return box


def paint_mouse_bite(rng, board, boxes, free):
    """A row of round nibbles out of a trace edge."""
    seg = pick_segment(rng, board)
    if seg is None:
        return None
    frame, width, across0 = seg["fr"], seg["t"], seg["c0"]
    h, w = board.h, board.w
    r = max(3, int(round(width * rng.uniform(0.3, 0.5))))
    n_bites = int(rng.integers(2, 5))
    step = r * rng.uniform(1.3, 2.0)
    span = (n_bites - 1) * step + 2 * r
    if seg["a1"] - seg["a0"] < span + 2:
        return None
    along = rng.uniform(seg["a0"], seg["a1"] - span)
    first_side = rng.random() < 0.5
    alternating = rng.random() < 0.25

    roi = segment_roi(seg, int(along) - 2, int(along + span) + 3, r + 1, h, w)
    x0, y0, x1, y1 = roi
    before = board.trace[y0:y1, x0:x1]
    work = before.copy()
    for k in range(n_bites):
        upper = first_side if not (alternating and k % 2) else not first_side
        p = frame.pts([(along + r + k * step, across0 if upper else across0 + width - 1)])[0]
        cv2.circle(work, (int(round(p[0])) - x0, int(round(p[1])) - y0), r, 0, -1)
    box = changed_box(before, work, x0, y0)
    if box is None:
        return None
    # The box spans the whole damaged stretch of the trace, not only the bitten edge.
    full = segment_roi(seg, 0, 0, 0, h, w)
    if frame.vertical:
        box = (full[0], box[1], full[2], box[3])
    else:
        box = (box[0], full[1], box[2], full[3])
    if not clear_of(box, boxes, 6 * board.sc):
        return None
    board.trace[y0:y1, x0:x1] = work
    return box


def paint_open_circuit(rng, board, boxes, free):
    """A cut right through one trace, its ends possibly slanted."""
    seg = pick_segment(rng, board)
    if seg is None:
        return None
    frame, width, across0, sc = seg["fr"], seg["t"], seg["c0"], board.sc
    cut = max(4, int(rng.uniform(7, 16) * sc))
    slant = int(rng.uniform(-0.5, 0.5) * width)
    if seg["a1"] - seg["a0"] < cut + abs(slant) + 2:
        return None
    a = int(rng.uniform(seg["a0"] + max(0, -slant), seg["a1"] - cut - max(0, slant)))
    quad = [(a, across0 - 1), (a + cut, across0 - 1), (a + cut + slant, across0 + width), (a + slant, across0 + width)]
    roi = segment_roi(seg, a - abs(slant) - 2, a + cut + abs(slant) + 3, 2, board.h, board.w)
    return commit_edit(board.trace, roi, lambda layer: frame.poly(layer, quad, 0), boxes, sc)


def paint_short(rng, board, boxes, free):
    """A copper bridge across the gap between neighbouring traces."""
    if not board.pairs:
        return None
    seg1, seg2 = board.pairs[int(rng.integers(len(board.pairs)))]
    sc = board.sc
    lo, hi = max(seg1["a0"], seg2["a0"]), min(seg1["a1"], seg2["a1"])
    bridge = max(3, int(rng.uniform(5, 11) * sc))
    skew = int(rng.uniform(-0.8, 0.8) * bridge)
    if hi - lo < bridge + abs(skew) + 2:
        return None
    a = int(rng.uniform(lo + max(0, -skew), hi - bridge - max(0, skew)))
    edge1, edge2 = seg1["c0"] + seg1["t"] - 1, seg2["c0"]
    quad = [(a, edge1), (a + bridge, edge1), (a + bridge + skew, edge2 + 1), (a + skew, edge2 + 1)]
    frame = seg1["fr"]
    roi = segment_roi(seg1, a - abs(skew) - 2, a + bridge + abs(skew) + 3, seg2["c0"] + seg2["t"] - seg1["c0"],
                      board.h, board.w)
    return commit_edit(board.trace, roi, lambda layer: frame.poly(layer, quad, 255), boxes, sc)


def paint_spur(rng, board, boxes, free):
    """A copper spike from a trace edge into free space."""
    seg = pick_segment(rng, board)
    if seg is None:
        return None
    frame, width, across0, sc = seg["fr"], seg["t"], seg["c0"], board.sc
    upper = rng.random() < 0.5
    room = seg["lo"] if upper else seg["hi"]
    length = int(min(rng.uniform(7, 16) * sc, room - 4 * sc))
    if length < 4:
        return None
    base = max(3, int(rng.uniform(5, 11) * sc))
    tip = rng.uniform(1, 3)
    offset = rng.uniform(-0.6, 0.6) * base
    if seg["a1"] - seg["a0"] < base + 2 * abs(offset) + 4:
        return None
    a = rng.uniform(seg["a0"] + abs(offset) + 1, seg["a1"] - base - abs(offset) - 1)
    edge, tip_across = (across0, across0 - length) if upper else (across0 + width - 1, across0 + width - 1 + length)
    mid = a + base / 2 + offset
    poly = [(a, edge), (a + base, edge), (mid + tip / 2, tip_across), (mid - tip / 2, tip_across)]
    roi = segment_roi(seg, int(a - abs(offset)) - 2, int(a + base + abs(offset)) + 3, length + 2, board.h, board.w)
    return commit_edit(board.trace, roi, lambda layer: frame.poly(layer, poly, 255), boxes, sc)


def paint_spurious_copper(rng, board, boxes, free):
    """An isolated copper blob in bare board."""
    h, w, sc = board.h, board.w, board.sc
    c = pick(rng, free, w)
    if c is None:
        return None
    rad = rng.uniform(5, 13) * sc
    k = int(rng.integers(5, 10))
    ang = np.sort(rng.uniform(0, 2 * math.pi, k))
    rr = rad * rng.uniform(0.55, 1.0, k)
    poly = np.stack([c[0] + rr * np.cos(ang), c[1] + rr * np.sin(ang)], 1)
    e = int(rad) + 3
    x0, y0, x1, y1 = max(0, c[0] - e), max(0, c[1] - e), min(w, c[0] + e + 1), min(h, c[1] + e + 1)
    before = board.trace[y0:y1, x0:x1].copy()
    blob = before.copy()
    cv2.fillPoly(blob, [np.round(poly - (x0, y0)).astype(np.int32)], 255)
    box = changed_box(before, blob, x0, y0)
    if box is None or min(box[2] - box[0], box[3] - box[1]) < 4 or not clear_of(box, boxes, 6 * sc):
        return None
    board.trace[y0:y1, x0:x1] = blob
    return box


def pick_segment(rng, board):
    """A random straight trace run of the board (one draw), or None when it has none."""
    if not board.segs:
        return None
    return board.segs[int(rng.integers(len(board.segs)))]


# In class-id order: PAINTERS[cls] paints class NAMES[cls].
PAINTERS = (paint_missing_hole, paint_mouse_bite, paint_open_circuit, paint_short, paint_spur, paint_spurious_copper)


def commit_edit(layer, roi, fn, boxes, sc):
    """Try `fn` on a copy of the ROI; keep it only if it changed pixels clear of other defects."""
    x0, y0, x1, y1 = roi
    if x1 <= x0 or y1 <= y0:
        return None
    saved = layer[y0:y1, x0:x1].copy()
    box = edit_box(layer, roi, fn)
    if box is None or not clear_of(box, boxes, 6 * sc):
        layer[y0:y1, x0:x1] = saved
        return None
    return box


def render(rng, h, w):
    """-> (BGR uint8 image, [(class, x1, y1, x2, y2)] pixel boxes) of one board image."""
    sc = min(h, w) / 640.0
    b = Board(h, w, sc)
    m = int(12 * sc)
    regs = split_regions(rng, m, m, w - m, h - m, int(110 * sc), int(rng.integers(4, 8)))
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
    if SPURIOUS_COPPER in classes:
        occ = cv2.bitwise_or(cv2.bitwise_or(b.trace, b.pad), cv2.bitwise_or(b.silk, b.body))
        k = 2 * int(18 * sc) + 1
        occ = cv2.dilate(occ, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
        e = int(20 * sc)
        occ[:e], occ[-e:], occ[:, :e], occ[:, -e:] = 255, 255, 255, 255
        free = np.flatnonzero(occ == 0)
    boxes, labelled = [], []
    for cls in classes:
        for _try in range(20):
            box = PAINTERS[cls](rng, b, boxes, free)
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
    tex = noise_field(rng, h, w, max(8, int(64 * sc))) * rng.uniform(3, 8)
    planes = np.empty((3, h, w), np.float32)
    for c in range(3):
        p = cv2.GaussianBlur(cv2.LUT(L, palette[:, c].copy()), (3, 3), blur)
        np.add(p, tex, out=planes[c], dtype=np.float32)
    out = finish(rng, planes, (0.05, 0.25))

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
