"""Training inputs: letterboxed exactly like the runtime, plus light augmentation (numpy + OpenCV).

Every image goes through `defectrt.runtime.preprocess.letterbox` to the training size first, so the
network trains on the pixels it will see at inference time. Augmentation then works in that
letterboxed frame: optional 2x2 mosaic, a random affine (scale, translation; the border is the
letterbox grey 114), HSV jitter and flips. Each sample's randomness comes from its own stream
`default_rng([seed, epoch, index])`, so an epoch is reproducible whatever the worker count and a
resumed run sees the same augmentations as an uninterrupted one.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from defectrt.data.dataset import Dataset, read_image
from defectrt.runtime.preprocess import PAD_VALUE, letterbox

DEFAULT_AUGMENT = {
    "hsv_h": 0.015,  # hue gain (fraction of the full circle)
    "hsv_s": 0.5,  # saturation gain
    "hsv_v": 0.3,  # value gain
    "fliplr": 0.5,  # probability of a horizontal flip
    "flipud": 0.0,  # probability of a vertical flip
    "scale": 0.25,  # zoom in [1 - scale, 1 + scale]
    "translate": 0.1,  # shift up to this fraction of the side
    "mosaic": 0.0,  # probability of a 2x2 mosaic
}
NO_AUGMENT = {k: 0.0 for k in DEFAULT_AUGMENT}


def letterboxed_sample(image, labels, imgsz):
    """BGR image + YOLO labels (N, 5) -> (letterboxed image, (N, 5) [cls, x1, y1, x2, y2] input pixels)."""
    boxed, info = letterbox(image, imgsz)
    boxes = info.to_input(Dataset.boxes_xyxy(labels, image.shape)) if len(labels) else np.zeros((0, 4), np.float32)
    out = np.concatenate([labels[:, :1].astype(np.float32), boxes.astype(np.float32)], 1) if len(labels) else \
        np.zeros((0, 5), np.float32)
    return boxed, out


def augment_hsv(img, rng, hgain, sgain, vgain):
    """Random hue / saturation / value gains applied through lookup tables -> a new BGR uint8 image."""
    if not (hgain or sgain or vgain):
        return img
    r = rng.uniform(-1, 1, 3) * np.array([hgain, sgain, vgain]) + 1
    hue, sat, val = cv2.split(cv2.cvtColor(img, cv2.COLOR_BGR2HSV))
    x = np.arange(256, dtype=np.float32)
    lut_h = ((x * r[0]) % 180).astype(np.uint8)
    lut_s = np.clip(x * r[1], 0, 255).astype(np.uint8)
    lut_v = np.clip(x * r[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_h), cv2.LUT(sat, lut_s), cv2.LUT(val, lut_v)))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def random_affine(img, boxes, out_hw, rng, scale=0.0, translate=0.0, min_side=2.0, min_area_ratio=0.25):
    """Zoom about the image centre and shift; the centre lands at the output centre (+ shift).

    When the output is smaller than the zoomed image (random crops), the shift also ranges over
    every window of the output's size, so each part of the image can be picked.

    boxes (N, 5) [cls, x1, y1, x2, y2]. Boxes are transformed by their corners, clipped to the output,
    and dropped when smaller than `min_side` pixels or when less than `min_area_ratio` of the box
    remains visible.
    """
    h, w = out_hw
    ih, iw = img.shape[:2]
    s = rng.uniform(1 - scale, 1 + scale) if scale else 1.0
    rx = translate * w + max(0.0, (s * iw - w) / 2.0)
    ry = translate * h + max(0.0, (s * ih - h) / 2.0)
    tx = rng.uniform(-rx, rx) if rx else 0.0
    ty = rng.uniform(-ry, ry) if ry else 0.0
    m = np.array([[s, 0, w / 2.0 + tx - s * iw / 2.0], [0, s, h / 2.0 + ty - s * ih / 2.0]], np.float32)
    if s == 1.0 and m[0, 2] == 0 and m[1, 2] == 0 and (ih, iw) == (h, w):
        return img, boxes
    out = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=(PAD_VALUE,) * 3)
    return out, _warp_boxes(boxes, s, m, out_hw, min_side, min_area_ratio)


def _warp_boxes(boxes, s, m, out_hw, min_side=2.0, min_area_ratio=0.25):
    """Boxes (N, 5) [cls, x1, y1, x2, y2] through the zoom `s` and shift of the 2x3 matrix `m`, clipped to
    the output and dropped when smaller than `min_side` pixels or less than `min_area_ratio` visible."""
    if len(boxes) == 0:
        return boxes
    h, w = out_hw
    b = boxes[:, 1:5].copy()
    b[:, [0, 2]] = b[:, [0, 2]] * s + m[0, 2]
    b[:, [1, 3]] = b[:, [1, 3]] * s + m[1, 2]
    full_area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, w)
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, h)
    bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    keep = (bw > min_side) & (bh > min_side) & (bw * bh > min_area_ratio * np.maximum(full_area, 1e-6))
    return np.concatenate([boxes[keep, :1], b[keep]], 1).astype(np.float32)


class TrainDataset(torch.utils.data.Dataset):
    """One split of a YOLO dataset as letterboxed (and optionally augmented) training samples.

    Letterboxed images are cached in memory (uint8, at the training size) unless cache=False.
    `set_epoch(e)` selects the augmentation streams of epoch e. `crop` (h, w): with augmentation,
    train on random windows of that size cut from the letterboxed (and zoomed) image - the same
    pixel scale as inference at `imgsz`, for a fraction of the compute per step.
    """

    def __init__(self, dataset, imgsz, augment=None, seed=0, cache=True, crop=None):
        self.dataset = dataset
        self.items = list(dataset.items)
        self.imgsz = (int(imgsz[0]), int(imgsz[1]))
        self.out_hw = (int(crop[0]), int(crop[1])) if crop and augment is not None and augment is not False \
            else self.imgsz
        self.hyp = dict(NO_AUGMENT if augment is None or augment is False else DEFAULT_AUGMENT)
        if isinstance(augment, dict):
            unknown = set(augment) - set(DEFAULT_AUGMENT)
            if unknown:
                raise ValueError("unknown augmentation settings: {}".format(", ".join(sorted(unknown))))
            self.hyp.update(augment)
        self.augment = augment is not None and augment is not False
        self.seed = int(seed)
        self.epoch = 0
        self._cache = [None] * len(self.items) if cache else None

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def __len__(self):
        return len(self.items)

    def load(self, i):
        if self._cache is not None and self._cache[i] is not None:
            return self._cache[i]
        item = self.items[i]
        sample = letterboxed_sample(read_image(item.image), item.labels, self.imgsz)
        if self._cache is not None:
            self._cache[i] = sample
        return sample

    def _mosaic(self, i, rng):
        h, w = self.imgsz
        canvas = np.full((2 * h, 2 * w, 3), PAD_VALUE, np.uint8)
        xc, yc = int(rng.uniform(0.5 * w, 1.5 * w)), int(rng.uniform(0.5 * h, 1.5 * h))
        idx = [i] + [int(j) for j in rng.integers(0, len(self), 3)]
        all_boxes = []
        for k, j in enumerate(idx):
            img, boxes = self.load(j)
            ih, iw = img.shape[:2]
            # k: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right of the centre point
            x1 = xc - iw if k in (0, 2) else xc
            y1 = yc - ih if k in (0, 1) else yc
            cx1, cy1, cx2, cy2 = max(x1, 0), max(y1, 0), min(x1 + iw, 2 * w), min(y1 + ih, 2 * h)
            canvas[cy1:cy2, cx1:cx2] = img[cy1 - y1:cy2 - y1, cx1 - x1:cx2 - x1]
            if len(boxes):
                b = boxes.copy()
                b[:, [1, 3]] += x1
                b[:, [2, 4]] += y1
                all_boxes.append(b)
        boxes = np.concatenate(all_boxes, 0) if all_boxes else np.zeros((0, 5), np.float32)
        if len(boxes):  # parts of the outer images fall off the canvas: clip their boxes too
            b = boxes[:, 1:5]
            full = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
            b[:, [0, 2]] = b[:, [0, 2]].clip(0, 2 * w)
            b[:, [1, 3]] = b[:, [1, 3]].clip(0, 2 * h)
            bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
            boxes = boxes[(bw > 2) & (bh > 2) & (bw * bh > 0.25 * np.maximum(full, 1e-6))]
        # Zoom the 2x canvas back to the output size around a random window.
        return canvas, boxes

    def sample(self, i):
        """-> (RGB uint8 (h, w, 3) contiguous, (N, 5) [cls, x1, y1, x2, y2] pixels)."""
        hyp = self.hyp
        if not self.augment:
            img, boxes = self.load(i)
            return np.ascontiguousarray(img[..., ::-1]), boxes.copy()
        rng = np.random.default_rng([self.seed, self.epoch, i])
        if hyp["mosaic"] and rng.random() < hyp["mosaic"]:
            img, boxes = self._mosaic(i, rng)
            # The canvas is twice the output: zoom by 0.5 * (1 +- scale), centred.
            s = 0.5 * rng.uniform(1 - hyp["scale"], 1 + hyp["scale"])
            img, boxes = _scaled_affine(img, boxes, self.out_hw, s, rng, hyp["translate"])
        else:
            img, boxes = self.load(i)
            img, boxes = random_affine(img, boxes.copy(), self.out_hw, rng, hyp["scale"], hyp["translate"])
        img = augment_hsv(np.ascontiguousarray(img), rng, hyp["hsv_h"], hyp["hsv_s"], hyp["hsv_v"])
        h, w = img.shape[:2]
        if hyp["fliplr"] and rng.random() < hyp["fliplr"]:
            img = img[:, ::-1]
            if len(boxes):
                boxes[:, [1, 3]] = w - boxes[:, [3, 1]]
        if hyp["flipud"] and rng.random() < hyp["flipud"]:
            img = img[::-1]
            if len(boxes):
                boxes[:, [2, 4]] = h - boxes[:, [4, 2]]
        return np.ascontiguousarray(img[..., ::-1]), boxes

    def __getitem__(self, i):
        img, boxes = self.sample(i)
        return torch.from_numpy(img).permute(2, 0, 1), torch.from_numpy(boxes.astype(np.float32))


def _scaled_affine(img, boxes, out_hw, s, rng, translate):
    h, w = out_hw
    ih, iw = img.shape[:2]
    tx = rng.uniform(-translate, translate) * w if translate else 0.0
    ty = rng.uniform(-translate, translate) * h if translate else 0.0
    m = np.array([[s, 0, w / 2.0 + tx - s * iw / 2.0], [0, s, h / 2.0 + ty - s * ih / 2.0]], np.float32)
    out = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
                         borderValue=(PAD_VALUE,) * 3)
    return out, _warp_boxes(boxes, s, m, out_hw)


def collate(batch):
    """[(img uint8 (3, h, w), boxes (N, 5))] -> (images float32 (B, 3, h, w) in [0, 1], targets (M, 6))."""
    imgs = torch.stack([b[0] for b in batch]).float().div_(255.0)
    targets = []
    for i, (_, boxes) in enumerate(batch):
        if len(boxes):
            targets.append(torch.cat([torch.full((len(boxes), 1), float(i)), boxes], 1))
    targets = torch.cat(targets, 0) if targets else torch.zeros(0, 6)
    return imgs, targets


def batches(ds, batch_size, epoch, seed, shuffle=True, workers=0):
    """Iterate one epoch of (images, targets) batches in a seeded order."""
    ds.set_epoch(epoch)
    if shuffle:
        g = torch.Generator()
        g.manual_seed(int(seed) * 100003 + int(epoch))
        order = torch.randperm(len(ds), generator=g).tolist()
    else:
        order = list(range(len(ds)))
    chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if workers and workers > 0:
        loader = torch.utils.data.DataLoader(ds, batch_sampler=chunks, num_workers=workers, collate_fn=collate,
                                             persistent_workers=False)
        for b in loader:
            yield b
        return
    for chunk in chunks:
        yield collate([ds[i] for i in chunk])


def n_batches(n, batch_size):
    return int(math.ceil(n / float(batch_size)))
