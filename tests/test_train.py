"""The compact trainer: assigner, losses, data pipeline, resume and run folders (tiny and fast)."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from defectrt.errors import UserInputError  # noqa: E402
from defectrt.train.assigner import TaskAlignedAssigner  # noqa: E402
from defectrt.train.losses import NWD_C, DetectionLoss, ciou, dfl_loss, nwd  # noqa: E402

IMGSZ = (128, 128)


# ----------------------------------------------------------------------------- fixtures


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _small_nc2_data(tmp_path):
    """8 train + 2 val 128x128 images, nc=2: bright squares (class 0) and dark bars (class 1) on grey."""
    import cv2

    root = tmp_path / "shapes"
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("val", 2)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(n):
            img = np.full((128, 128, 3), 90, np.uint8)
            lines = []
            for c in (0, 1):
                w, h = (24, 24) if c == 0 else (12, 40)
                x1, y1 = int(rng.integers(4 + 64 * c, 60 + 64 * c - w)), int(rng.integers(4, 124 - h))
                cv2.rectangle(img, (x1, y1), (x1 + w - 1, y1 + h - 1), (230, 230, 230) if c == 0 else (20, 20, 20), -1)
                lines.append("{} {} {} {} {}".format(c, (x1 + w / 2) / 128, (y1 + h / 2) / 128, w / 128, h / 128))
            cv2.imwrite(str(root / "images" / split / "{}.png".format(i)), img)
            (root / "labels" / split / "{}.txt".format(i)).write_text("\n".join(lines) + "\n")
    (root / "data.yaml").write_text('path: "{}"\ntrain: images/train\nval: images/val\nnc: 2\nnames: ["square", "bar"]\n'
                                    .format(root))
    return str(root)


@pytest.fixture(scope="module")
def nc2_data(tmp_path_factory):
    return _small_nc2_data(tmp_path_factory.mktemp("nc2"))


def _quiet(*_a, **_k):
    pass


# ----------------------------------------------------------------------------- assigner


def _grid(n=8, stride=8.0):
    ys, xs = torch.meshgrid(torch.arange(n) + 0.5, torch.arange(n) + 0.5, indexing="ij")
    return torch.stack((xs, ys), -1).view(-1, 2) * stride  # (n*n, 2) pixels, centres at 4, 12, 20, ...


def _assign(gt_boxes, pred_boxes, anchors, labels=None, scores=None, nc=2, topk=10):
    a = anchors.shape[0]
    n = gt_boxes.shape[0]
    gt_boxes = gt_boxes.view(1, n, 4).float()
    labels = torch.zeros(1, n, 1) if labels is None else torch.tensor(labels, dtype=torch.float).view(1, n, 1)
    scores = torch.full((1, a, nc), 0.5) if scores is None else scores.view(1, a, nc)
    return TaskAlignedAssigner(topk=topk, num_classes=nc)(scores, pred_boxes.view(1, a, 4).float(), anchors,
                                                           labels, gt_boxes, torch.ones(1, n, 1, dtype=torch.bool))


def test_assigner_inside_anchor_gets_the_box_outside_does_not():
    anchors = _grid()
    gt = torch.tensor([[8.0, 8.0, 24.0, 16.0]])  # holds the anchor centres (12, 12) and (20, 12) only
    pred = gt.expand(anchors.shape[0], 4).clone()  # every prediction is the box: IoU 1 everywhere
    labels, boxes, scores, fg = _assign(gt, pred, anchors, labels=[1])
    inside = ((anchors[:, 0] > 8) & (anchors[:, 0] < 24) & (anchors[:, 1] > 8) & (anchors[:, 1] < 16))
    assert inside.sum() == 2
    assert torch.equal(fg[0], inside)  # exactly the anchors whose centres lie inside
    assert (labels[0][fg[0]] == 1).all()
    assert torch.allclose(boxes[0][fg[0]], gt.expand(2, 4))
    assert (scores[0][~fg[0]] == 0).all()
    # Soft targets: the box's best anchor gets the box's best IoU (1 here), only on its class.
    assert torch.allclose(scores[0][fg[0]][:, 1], torch.ones(2), atol=1e-5)
    assert (scores[0][fg[0]][:, 0] == 0).all()


def test_assigner_respects_topk_and_ranks_by_alignment():
    anchors = _grid()
    gt = torch.tensor([[0.0, 0.0, 64.0, 64.0]])  # all 64 anchors inside
    # Predictions of decreasing quality: anchor i predicts a box shrunk by i pixels -> IoU falls with i.
    shrink = torch.arange(64, dtype=torch.float).unsqueeze(1) * 0.5
    pred = torch.cat((shrink, shrink, 64 - shrink, 64 - shrink), 1)
    for k in (10, 3):
        _, _, scores, fg = _assign(gt, pred, anchors, topk=k)
        assert int(fg.sum()) == k
        assert torch.equal(torch.nonzero(fg[0]).flatten(), torch.arange(k))  # the k best aligned
    # Target scores follow t = s^0.5 * u^6, normalised so the best anchor gets the best IoU.
    _, _, scores, fg = _assign(gt, pred, anchors, topk=10)
    iou = ((64 - 2 * shrink[:10, 0]) ** 2) / 64 ** 2
    t = 0.5 ** 0.5 * iou ** 6
    expected = t / t.max() * iou.max()
    assert torch.allclose(scores[0, :10, 0], expected, atol=1e-5)


def test_assigner_score_enters_the_metric():
    anchors = _grid()
    gt = torch.tensor([[0.0, 0.0, 64.0, 64.0]])
    pred = gt.expand(64, 4).clone()  # equal IoU: the class score decides
    scores = torch.full((64, 2), 0.1)
    scores[[5, 17, 40], 0] = 0.9
    _, _, _, fg = _assign(gt, pred, anchors, scores=scores, topk=3)
    assert torch.nonzero(fg[0]).flatten().tolist() == [5, 17, 40]


def test_assigner_overlapping_boxes_anchor_keeps_the_better_iou():
    anchors = _grid()
    gts = torch.tensor([[0.0, 0.0, 32.0, 32.0], [8.0, 8.0, 40.0, 40.0]])
    pred = torch.tensor([[8.0, 8.0, 40.0, 40.0]]).expand(64, 4).clone()  # all predictions equal box 2
    labels, boxes, _, fg = _assign(gts, pred, anchors, labels=[0, 1], topk=64)
    a = 2 * 8 + 2  # anchor (20, 20): inside both boxes
    assert fg[0, a]
    assert labels[0, a] == 1 and torch.allclose(boxes[0, a], gts[1])


def test_assigner_ignores_padding_rows_and_empty_images():
    anchors = _grid()
    a = anchors.shape[0]
    assigner = TaskAlignedAssigner(topk=10, num_classes=2)
    gt = torch.tensor([[[0.0, 0.0, 64.0, 64.0]]])
    out = assigner(torch.full((1, a, 2), 0.5), gt.expand(1, a, 4).clone(), anchors, torch.zeros(1, 1, 1), gt,
                   torch.zeros(1, 1, 1, dtype=torch.bool))
    assert not out[3].any() and (out[2] == 0).all()
    out = assigner(torch.full((1, a, 2), 0.5), torch.zeros(1, a, 4), anchors, torch.zeros(1, 0, 1),
                   torch.zeros(1, 0, 4), torch.zeros(1, 0, 1, dtype=torch.bool))
    assert not out[3].any()


# ----------------------------------------------------------------------------- box losses


def test_ciou_known_values():
    a = torch.tensor([[10.0, 20.0, 50.0, 60.0]])
    assert torch.allclose(ciou(a, a), torch.ones(1), atol=1e-6)  # identical -> loss 1 - CIoU = 0
    # Same size, shifted by 2 in x: IoU = 2/6, centre distance^2 = 1, enclosing box 3 x 2 -> c^2 = 13, v = 0.
    b1, b2 = torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[1.0, 0.0, 3.0, 2.0]])
    assert torch.allclose(ciou(b1, b2), torch.tensor([1 / 3 - 1 / 13]), atol=1e-5)
    # Same centre, different aspect: rho = 0, v = 4/pi^2 (atan(2) - atan(1))^2, alpha = v / (1 - IoU + v).
    c1, c2 = torch.tensor([[0.0, 0.0, 4.0, 4.0]]), torch.tensor([[0.0, 1.0, 4.0, 3.0]])
    iou = 8 / 16
    v = 4 / math.pi ** 2 * (math.atan(2) - math.atan(1)) ** 2
    assert torch.allclose(ciou(c1, c2), torch.tensor([iou - v * v / (1 - iou + v)]), atol=1e-5)
    # Disjoint boxes still get a gradient pulling them together (the distance term).
    p = torch.tensor([[0.0, 0.0, 2.0, 2.0]], requires_grad=True)
    (1 - ciou(p, torch.tensor([[10.0, 0.0, 12.0, 2.0]]))).sum().backward()
    assert p.grad[0, 0] + p.grad[0, 2] < 0  # shifting the box right lowers the loss


def test_nwd_formula():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    assert torch.allclose(nwd(a, a), torch.ones(1), atol=1e-3)
    # Pure shift by (3, 4): W2 = 5.
    assert torch.allclose(nwd(a, torch.tensor([[3.0, 4.0, 13.0, 14.0]])), torch.tensor([math.exp(-5 / 12.8)]))
    # Centres (5, 5) vs (8, 9), sizes 10x10 vs 16x18: W2^2 = 3^2 + 4^2 + 3^2 + 4^2 = 50.
    b = torch.tensor([[0.0, 0.0, 16.0, 18.0]])
    assert torch.allclose(nwd(a, b), torch.tensor([math.exp(-math.sqrt(50) / NWD_C)]), atol=1e-6)
    # Scale matters less for NWD than IoU at small sizes: a 2-pixel shift of a 4-pixel box keeps NWD high.
    s1, s2 = torch.tensor([[0.0, 0.0, 4.0, 4.0]]), torch.tensor([[2.0, 0.0, 6.0, 4.0]])
    assert nwd(s1, s2) > 0.8 > float(ciou(s1, s2)) + 0.4


def test_dfl_loss_prefers_the_bracketing_bins():
    reg_max = 16
    target = torch.tensor([[3.25, 0.0, 7.5, 14.9]])
    good = torch.full((1, 4, reg_max), -20.0)
    for side, y in enumerate(target[0].tolist()):
        lo = int(y)
        good[0, side, lo] = math.log(max(lo + 1 - y, 1e-6))
        good[0, side, lo + 1] = math.log(max(y - lo, 1e-6))
    flat = torch.zeros(1, 4, reg_max)
    lg, lf = dfl_loss(good, target), dfl_loss(flat, target)
    assert lf.item() == pytest.approx(math.log(reg_max), rel=1e-5)  # uniform: -log(1/16)
    assert lg.item() < lf.item()
    # The minimum is the entropy of the two-bin split, reached by the matching distribution.
    ent = np.mean([-(w * math.log(w) + (1 - w) * math.log(1 - w)) if 0 < w < 1 else 0.0
                   for w in (0.75, 1.0, 0.5, 0.1)])
    assert lg.item() == pytest.approx(ent, abs=1e-3)


# ----------------------------------------------------------------------------- data


def test_unaugmented_input_matches_the_runtime_preprocess(tmp_path):
    import cv2

    from defectrt.data.dataset import load_dataset
    from defectrt.runtime.preprocess import preprocess
    from defectrt.train.data import TrainDataset, collate

    root = _small_nc2_data(tmp_path)
    ds = load_dataset(root, "train")
    td = TrainDataset(ds, (96, 160), augment=None)  # 128x128 -> letterboxed into 96x160 (pads left/right)
    imgs, targets = collate([td[0], td[1]])
    blob, infos = preprocess([cv2.imread(ds.items[0].image), cv2.imread(ds.items[1].image)], (96, 160))
    assert np.array_equal(imgs.numpy(), blob)
    boxes0 = targets[targets[:, 0] == 0, 2:].numpy()
    expected = infos[0].to_input(ds.boxes_xyxy(ds.items[0].labels, (128, 128)))
    assert np.allclose(boxes0, expected, atol=1e-4)


def test_augmented_boxes_follow_the_pixels(tmp_path):
    """After affine + flip + crop (or mosaic), each label still surrounds its bright/dark rectangle."""
    from defectrt.data.dataset import load_dataset
    from defectrt.train.data import TrainDataset

    root = _small_nc2_data(tmp_path)
    ds = load_dataset(root, "train")
    aug = {"hsv_h": 0.0, "hsv_s": 0.0, "hsv_v": 0.0, "fliplr": 0.5, "flipud": 0.5, "scale": 0.3, "translate": 0.1}
    for crop, mosaic in ((None, 0.0), ((96, 96), 0.0), (None, 1.0)):
        td = TrainDataset(ds, (128, 128), augment=dict(aug, mosaic=mosaic), seed=1, crop=crop)
        checked = 0
        for epoch in range(3):
            td.set_epoch(epoch)
            for i in range(len(td)):
                img, boxes = td.sample(i)
                assert img.shape[:2] == (crop or (128, 128))
                for c, x1, y1, x2, y2 in boxes:
                    patch = img[int(round(y1)) + 1:int(round(y2)) - 1, int(round(x1)) + 1:int(round(x2)) - 1]
                    mean = patch.mean()
                    assert (mean > 180) if c == 0 else (mean < 60), (epoch, i, c, mean)
                    checked += 1
        assert checked > 20


# ----------------------------------------------------------------------------- training


def _batch(root):
    from defectrt.data.dataset import load_dataset
    from defectrt.train.data import TrainDataset, batches

    return next(batches(TrainDataset(load_dataset(root, "train"), IMGSZ, augment=None), 8, 0, 0, shuffle=False))


def test_loss_decreases_on_a_tiny_batch(nc2_data):
    from defectrt import models

    torch.manual_seed(0)
    model = models.create("yolo11n", nc=2, names=["square", "bar"]).train()
    imgs, targets = _batch(nc2_data)
    for box_loss in ("ciou", "nwd"):
        crit = DetectionLoss(model, box_loss=box_loss)
        with torch.no_grad():
            first = crit(model(imgs), targets)[1]
        assert torch.isfinite(first).all() and (first > 0).all()
    crit = DetectionLoss(model)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(12):
        loss, items = crit(model(imgs), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.6 * losses[0], losses


def test_imgsz_must_be_a_multiple_of_32(nc2_data, tmp_path):
    from defectrt.train import train

    with pytest.raises(UserInputError, match="multiples of 32"):
        train("yolo11n", nc2_data, epochs=1, imgsz=(100, 128), project=str(tmp_path), log=_quiet, progress=False)


def _train(data, project, **kw):
    from defectrt.train import train

    model = kw.pop("model", "yolo11n")
    args = dict(epochs=2, imgsz=IMGSZ, batch=4, seed=0, project=str(project), name="exp", log=_quiet,
                progress=False, bn_recal=4)
    args.update(kw)
    return train(model, data, **args)


def _state(run_dir):
    return torch.load(os.path.join(run_dir, "weights", "last_state.pt"), map_location="cpu", weights_only=True)


def test_resume_continues_where_the_run_stopped(nc2_data, tmp_path, monkeypatch):
    from defectrt import models

    full = _train(nc2_data, tmp_path / "full")
    assert full.finished and full.epoch == 2 and [h["epoch"] for h in full.history] == [1, 2]

    class Stop(Exception):
        pass

    def stop_after_first(info):
        if info["epoch"] == 1:
            raise Stop()

    with pytest.raises(Stop) as exc:
        _train(nc2_data, tmp_path / "cut", callbacks={"on_epoch_end": stop_after_first})
    cut = exc.value.train_result
    assert cut.epoch == 1 and not cut.finished
    st = _state(cut.save_dir)
    assert st["epoch"] == 1 and not st["finished"]
    steps_per_epoch = 2  # 8 images, batch 4
    assert all(int(s["step"]) == steps_per_epoch for s in st["optimizer"]["state"].values())

    with monkeypatch.context() as m:  # the resume state is read by models.torchzip, never by torch.load
        m.setattr(torch, "load", None)
        resumed = _train(nc2_data, tmp_path / "cut", resume=True, epochs=None)
    assert resumed.save_dir == cut.save_dir  # same folder, no exp2
    assert resumed.finished and resumed.epoch == 2
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    st = _state(resumed.save_dir)
    assert st["epoch"] == 2 and st["finished"]
    assert all(int(s["step"]) == 2 * steps_per_epoch for s in st["optimizer"]["state"].values())
    assert st["ema_updates"] == 2 * steps_per_epoch
    # Optimizer moments, EMA and augmentation streams all carried over: the same weights as uninterrupted.
    a = _state(full.save_dir)
    for k in a["model"]:
        assert torch.allclose(a["model"][k].float(), st["model"][k].float(), atol=1e-5), k
    for k in a["ema"]:
        assert torch.allclose(a["ema"][k].float(), st["ema"][k].float(), atol=1e-5), k
    m = models.load(resumed.last)
    assert m.imgsz == list(IMGSZ) and m.names == {0: "square", 1: "bar"}

    with pytest.raises(UserInputError, match="finished"):
        _train(nc2_data, tmp_path / "cut", resume=True, epochs=None)


def test_stop_after_then_resume_via_cli(nc2_data, tmp_path):
    """stop_after leaves a resumable run; `defectrt train --resume` finishes it and extends with --epochs."""
    from defectrt.cli import main

    part = _train(nc2_data, tmp_path, stop_after=1, epochs=2)
    assert part.epoch == 1 and not part.finished
    rc = main(["train", "--resume", "--project", str(tmp_path), "--quiet"])
    assert rc == 0
    assert _state(part.save_dir)["epoch"] == 2
    rc = main(["train", "--resume", part.save_dir, "--epochs", "3", "--quiet"])
    assert rc == 0
    st = _state(part.save_dir)
    assert st["epoch"] == 3 and st["config"]["epochs"] == 3
    assert not os.path.exists(os.path.join(str(tmp_path), "exp2"))


def test_new_runs_never_overwrite(nc2_data, tmp_path):
    from defectrt.cli import main
    from defectrt.fileio import sha256_file

    first = _train(nc2_data, tmp_path, epochs=1, box_loss="nwd")
    assert first.save_dir == os.path.join(str(tmp_path), "exp")
    digest = sha256_file(first.last)
    rc = main(["train", "--model", "yolo11n", "--data", nc2_data, "--epochs", "1", "--imgsz", "128", "--batch", "4",
               "--project", str(tmp_path), "--quiet"])
    assert rc == 0
    second = os.path.join(str(tmp_path), "exp2")
    assert os.path.isfile(os.path.join(second, "weights", "last.safetensors"))
    assert os.path.isfile(os.path.join(second, "weights", "best.safetensors"))
    assert os.path.isfile(os.path.join(second, "results.csv"))
    assert sha256_file(first.last) == digest
    assert _state(first.save_dir)["config"]["box_loss"] == "nwd"
    third = _train(nc2_data, tmp_path, epochs=1)
    assert third.save_dir.endswith("exp3")


def test_bad_inputs_are_user_errors(nc2_data, tmp_path):
    from defectrt.train import train

    with pytest.raises(UserInputError, match="no runs"):
        train(None, None, resume=True, project=str(tmp_path / "nothing"), log=_quiet)
    with pytest.raises(UserInputError, match="nc=4"):
        from defectrt import models

        train(models.create("yolo11n", nc=4), nc2_data, epochs=1, imgsz=IMGSZ, project=str(tmp_path), log=_quiet)
    with pytest.raises(UserInputError, match="box loss"):
        train("yolo11n", nc2_data, epochs=1, imgsz=IMGSZ, box_loss="giou", project=str(tmp_path), log=_quiet)
