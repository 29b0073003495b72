"""Task-aligned label assignment (TOOD: Feng et al., "Task-aligned One-stage Object Detection", ICCV 2021).

For every ground-truth box g and anchor a:

    t(a, g) = s(a, g) ** alpha * u(a, g) ** beta

with s the predicted score of g's class at a and u the IoU of a's predicted box with g (alpha = 0.5,
beta = 6). The candidates of g are the anchors whose centres lie inside g; of these the top-k (10) by
t become g's positives. An anchor claimed by several boxes keeps the one its prediction overlaps
most. The classification target of a positive is soft: t normalised per box so that the box's best
anchor gets the box's best IoU, i.e. t(a, g) / max_a' t(a', g) * max_a' u(a', g).
"""
from __future__ import annotations

import torch
from torch import nn


def box_iou(a, b, eps=1e-7):
    """IoU of x1y1x2y2 boxes a[..., 4] and b[..., 4], broadcasting -> a[...]."""
    iw = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    ih = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(min=0)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    return inter / (area_a + area_b - inter + eps)


def pairwise_iou(gt, pred, eps=1e-9):
    """gt (B, n, 4), pred (B, A, 4) x1y1x2y2 -> IoU (B, n, A)."""
    return box_iou(gt.unsqueeze(2), pred.unsqueeze(1), eps)


def centres_in_boxes(points, boxes, eps=1e-9):
    """points (A, 2), boxes (B, n, 4) -> bool (B, n, A): the point lies strictly inside the box."""
    p = points.view(1, 1, -1, 2)
    lt = p - boxes[..., None, :2]
    rb = boxes[..., None, 2:] - p
    return torch.cat((lt, rb), -1).amin(-1) > eps


class TaskAlignedAssigner(nn.Module):
    def __init__(self, topk=10, num_classes=80, alpha=0.5, beta=6.0, eps=1e-9):
        super().__init__()
        self.topk = topk
        self.num_classes = num_classes
        self.alpha = alpha
        self.beta = beta
        self.eps = eps

    @torch.no_grad()
    def forward(self, pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt):
        """Assign ground truths to anchors.

        pd_scores (B, A, nc) probabilities; pd_bboxes (B, A, 4) x1y1x2y2 pixels; anc_points (A, 2) pixels;
        gt_labels (B, n, 1); gt_bboxes (B, n, 4) x1y1x2y2 pixels; mask_gt (B, n, 1) bool (padding rows False).
        Returns target_labels (B, A) long, target_bboxes (B, A, 4), target_scores (B, A, nc), fg_mask (B, A) bool.
        """
        b, a, nc = pd_scores.shape
        n = gt_bboxes.shape[1]
        device = pd_scores.device
        if n == 0:
            return (torch.zeros(b, a, dtype=torch.long, device=device), torch.zeros(b, a, 4, device=device),
                    torch.zeros_like(pd_scores), torch.zeros(b, a, dtype=torch.bool, device=device))

        valid = mask_gt.view(b, n, 1).bool()
        in_gt = centres_in_boxes(anc_points, gt_bboxes, self.eps) & valid  # (B, n, A)
        labels = gt_labels.view(b, n).long().clamp(0, nc - 1)

        overlaps = pairwise_iou(gt_bboxes, pd_bboxes).clamp(min=0) * in_gt  # (B, n, A)
        # Score of each box's own class at every anchor: gather along the class axis.
        cls_scores = pd_scores.permute(0, 2, 1).gather(1, labels.unsqueeze(-1).expand(b, n, a))  # (B, n, A)
        align = cls_scores.clamp(min=0).pow(self.alpha) * overlaps.pow(self.beta) * in_gt

        # Top-k among the candidates only: non-candidates are pushed below every candidate.
        k = min(self.topk, a)
        ranked = torch.where(in_gt, align, torch.full_like(align, -1.0))
        top_idx = ranked.topk(k, dim=-1).indices  # (B, n, k)
        topk_mask = torch.zeros_like(in_gt)
        topk_mask.scatter_(-1, top_idx, True)
        mask_pos = topk_mask & in_gt  # (B, n, A)

        # An anchor claimed by several boxes keeps the one with the highest IoU.
        multi = mask_pos.sum(1) > 1  # (B, A)
        if multi.any():
            best = (overlaps * mask_pos).argmax(1)  # (B, A), among the boxes that chose the anchor
            best_onehot = torch.zeros_like(mask_pos).scatter_(1, best.unsqueeze(1), True)
            mask_pos = torch.where(multi.unsqueeze(1), best_onehot & mask_pos.any(1, keepdim=True), mask_pos)
        fg_mask = mask_pos.any(1)  # (B, A)
        gt_idx = mask_pos.float().argmax(1)  # (B, A)

        batch_idx = torch.arange(b, device=device).unsqueeze(1)
        target_labels = labels[batch_idx, gt_idx]  # (B, A)
        target_bboxes = gt_bboxes[batch_idx, gt_idx]  # (B, A, 4)

        align = align * mask_pos
        pos_align_max = align.amax(-1, keepdim=True)  # (B, n, 1)
        pos_iou_max = (overlaps * mask_pos).amax(-1, keepdim=True)
        norm = (align * pos_iou_max / (pos_align_max + self.eps)).amax(1)  # (B, A)
        target_scores = torch.zeros(b, a, nc, device=device, dtype=pd_scores.dtype)
        target_scores.scatter_(-1, target_labels.unsqueeze(-1), 1.0)
        target_scores = target_scores * (norm * fg_mask).unsqueeze(-1)
        return target_labels, target_bboxes, target_scores, fg_mask
