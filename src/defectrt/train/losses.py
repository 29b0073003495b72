"""Detection losses written from the papers (no third-party training code).

* Task-aligned assignment: TOOD (Feng et al., ICCV 2021), see assigner.py.
* Classification: binary cross-entropy against the assigner's soft (IoU-aware) class targets.
* Box regression: CIoU (Zheng et al., "Enhancing Geometric Factors in Model Learning and Inference
  for Object Detection and Instance Segmentation", 2021) or, for SME-YOLO, the normalized Wasserstein
  distance (Wang et al., "A Normalized Gaussian Wasserstein Distance for Tiny Object Detection", 2021)
  with C = 12.8 pixels.
* Distribution focal loss: Generalized Focal Loss (Li et al., NeurIPS 2020): the box side is a
  discrete distribution over reg_max bins; the loss pulls probability onto the two bins bracketing
  the continuous target, weighted by distance.

Gains box 7.5, cls 0.5, dfl 1.5 are the published YOLOv8/YOLO11 hyper-parameters.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from defectrt.models.head import dist2bbox, make_anchors
from defectrt.train.assigner import TaskAlignedAssigner, box_iou


NWD_C = 12.8  # pixels: the normalising constant of the NWD paper (AI-TOD average object size)


def ciou(a, b, eps=1e-7):
    """Complete IoU of matching x1y1x2y2 boxes: IoU - rho^2 / c^2 - alpha * v.

    rho: distance of the centres; c: diagonal of the smallest enclosing box;
    v = 4 / pi^2 * (atan(wb / hb) - atan(wa / ha))^2 (aspect-ratio consistency);
    alpha = v / ((1 - IoU) + v), treated as a constant in the gradient as in the paper.
    """
    iou = box_iou(a, b, eps)
    wa, ha = a[..., 2] - a[..., 0], (a[..., 3] - a[..., 1]).clamp(min=eps)
    wb, hb = b[..., 2] - b[..., 0], (b[..., 3] - b[..., 1]).clamp(min=eps)
    cw = torch.maximum(a[..., 2], b[..., 2]) - torch.minimum(a[..., 0], b[..., 0])
    ch = torch.maximum(a[..., 3], b[..., 3]) - torch.minimum(a[..., 1], b[..., 1])
    c2 = cw ** 2 + ch ** 2 + eps
    rho2 = ((a[..., 0] + a[..., 2] - b[..., 0] - b[..., 2]) ** 2 + (a[..., 1] + a[..., 3] - b[..., 1] - b[..., 3]) ** 2) / 4
    v = (4 / math.pi ** 2) * (torch.atan(wb / hb) - torch.atan(wa / ha)) ** 2
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


def nwd(a, b, c=NWD_C, eps=1e-7):
    """Normalized Wasserstein distance of matching x1y1x2y2 boxes (pixels), in (0, 1].

    Each box is the Gaussian N((cx, cy), diag(w^2 / 4, h^2 / 4)); between two such Gaussians
    W2^2 = dcx^2 + dcy^2 + ((wa - wb) / 2)^2 + ((ha - hb) / 2)^2 and NWD = exp(-sqrt(W2^2) / C).
    """
    dcx = (a[..., 0] + a[..., 2] - b[..., 0] - b[..., 2]) / 2
    dcy = (a[..., 1] + a[..., 3] - b[..., 1] - b[..., 3]) / 2
    dw = ((a[..., 2] - a[..., 0]) - (b[..., 2] - b[..., 0])) / 2
    dh = ((a[..., 3] - a[..., 1]) - (b[..., 3] - b[..., 1])) / 2
    w2 = dcx ** 2 + dcy ** 2 + dw ** 2 + dh ** 2
    return torch.exp(-torch.sqrt(w2 + eps) / c)


def bbox2dist(anchor_points, boxes, reg_max):
    """x1y1x2y2 boxes (grid units) -> (l, t, r, b) distances from the anchors, clipped to the DFL range."""
    x1y1, x2y2 = boxes.chunk(2, -1)
    return torch.cat((anchor_points - x1y1, x2y2 - anchor_points), -1).clamp(0, reg_max - 1 - 0.01)


def dfl_loss(pred_logits, target):
    """Distribution focal loss. pred_logits (N, 4, reg_max) raw; target (N, 4) continuous in [0, reg_max - 1).

    -((y_r - y) log S_l + (y - y_l) log S_r) with y_l = floor(y), y_r = y_l + 1; mean over the 4 sides -> (N,).
    """
    tl = target.long()
    tr = tl + 1
    wl = tr.float() - target
    wr = 1 - wl
    logp = F.log_softmax(pred_logits, -1)
    loss = -(logp.gather(-1, tl.unsqueeze(-1)).squeeze(-1) * wl + logp.gather(-1, tr.unsqueeze(-1)).squeeze(-1) * wr)
    return loss.mean(-1)


class DetectionLoss:
    """YOLO11 detection loss on the training-mode head output (a list of per-level maps).

    targets: (M, 6) rows [image index in batch, class, x1, y1, x2, y2] in input pixels.
    Returns (total, items) where items = tensor([box, cls, dfl]) (detached, already gained).
    The total is the per-batch loss (each component normalised by the sum of target scores), not
    multiplied by the batch size.
    """

    def __init__(self, model, box_loss="ciou", box_gain=7.5, cls_gain=0.5, dfl_gain=1.5, topk=10, alpha=0.5,
                 beta=6.0, nwd_c=NWD_C):
        head = model.model[-1]
        if box_loss not in ("ciou", "nwd"):
            raise ValueError("box_loss must be 'ciou' or 'nwd', not {!r}".format(box_loss))
        self.nc = head.nc
        self.reg_max = head.reg_max
        self.no = head.no
        self.strides = [float(s) for s in head.stride.tolist()]
        self.box_loss = box_loss
        self.gains = (box_gain, cls_gain, dfl_gain)
        self.nwd_c = nwd_c
        self.assigner = TaskAlignedAssigner(topk=topk, num_classes=self.nc, alpha=alpha, beta=beta)
        self.proj = torch.arange(self.reg_max, dtype=torch.float32)

    def _targets(self, targets, batch_size, device):
        """(M, 6) -> labels (B, n, 1), boxes (B, n, 4), valid mask (B, n, 1) padded to the largest image."""
        if targets.shape[0] == 0:
            return (torch.zeros(batch_size, 0, 1, device=device), torch.zeros(batch_size, 0, 4, device=device),
                    torch.zeros(batch_size, 0, 1, dtype=torch.bool, device=device))
        idx = targets[:, 0].long()
        counts = torch.bincount(idx, minlength=batch_size)
        n = int(counts.max())
        labels = torch.zeros(batch_size, n, 1, device=device)
        boxes = torch.zeros(batch_size, n, 4, device=device)
        valid = torch.zeros(batch_size, n, 1, dtype=torch.bool, device=device)
        order = torch.argsort(idx, stable=True)
        idx_sorted = idx[order]
        starts = torch.cumsum(counts, 0) - counts
        slot = torch.arange(len(idx), device=device) - starts[idx_sorted]
        labels[idx_sorted, slot, 0] = targets[order, 1]
        boxes[idx_sorted, slot] = targets[order, 2:6]
        valid[idx_sorted, slot, 0] = True
        return labels, boxes, valid

    def __call__(self, preds, targets):
        b = preds[0].shape[0]
        device = preds[0].device
        x = torch.cat([p.view(b, self.no, -1) for p in preds], 2)
        pred_distri, pred_scores = x.split((self.reg_max * 4, self.nc), 1)
        pred_distri = pred_distri.permute(0, 2, 1).contiguous()  # (B, A, 4 * reg_max)
        pred_scores = pred_scores.permute(0, 2, 1).contiguous()  # (B, A, nc)
        anchor_points, stride_tensor = make_anchors(preds, self.strides, 0.5)  # grid units, (A, 2) / (A, 1)
        a = anchor_points.shape[0]

        logits = pred_distri.view(b, a, 4, self.reg_max)
        dist = logits.softmax(-1).matmul(self.proj.to(logits.dtype).to(device))  # (B, A, 4) grid units
        pred_bboxes = dist2bbox(dist, anchor_points, xywh=False)  # grid units

        gt_labels, gt_bboxes, valid = self._targets(targets.to(device), b, device)
        target_labels, target_bboxes, target_scores, fg_mask = self.assigner(
            pred_scores.detach().sigmoid(), (pred_bboxes.detach() * stride_tensor).type(gt_bboxes.dtype),
            anchor_points * stride_tensor, gt_labels, gt_bboxes, valid)
        target_scores_sum = max(float(target_scores.sum()), 1.0)

        loss_cls = F.binary_cross_entropy_with_logits(pred_scores, target_scores.to(pred_scores.dtype),
                                                      reduction="sum") / target_scores_sum
        loss_box = pred_scores.new_zeros(())
        loss_dfl = pred_scores.new_zeros(())
        if fg_mask.any():
            weight = target_scores.sum(-1)[fg_mask]  # (P,)
            pb_px = (pred_bboxes * stride_tensor)[fg_mask]
            tb_px = target_bboxes[fg_mask]
            if self.box_loss == "ciou":
                lb = 1.0 - ciou(pb_px, tb_px)
            else:
                lb = 1.0 - nwd(pb_px, tb_px, self.nwd_c)
            loss_box = (lb * weight).sum() / target_scores_sum
            target_grid = target_bboxes / stride_tensor  # grid units per anchor
            target_ltrb = bbox2dist(anchor_points.unsqueeze(0).expand(b, -1, -1), target_grid, self.reg_max)[fg_mask]
            loss_dfl = (dfl_loss(logits[fg_mask], target_ltrb) * weight).sum() / target_scores_sum
        gb, gc, gd = self.gains
        items = torch.stack((loss_box * gb, loss_cls * gc, loss_dfl * gd))
        return items.sum(), items.detach()
