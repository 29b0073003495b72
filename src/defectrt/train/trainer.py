"""A compact YOLO11 trainer (CPU-friendly): TOOD assignment, BCE + CIoU/NWD + DFL, EMA, warm-up + cosine LR.

    from defectrt.train import train
    res = train("yolo11n-dysample", "datasets/screw", epochs=60, imgsz=(256, 448))
    print(res.best, res.metrics)

A run writes to PROJECT/NAME (NAME, NAME2, NAME3, ... - a new run never reuses a folder):
    weights/last.safetensors   EMA weights after the latest epoch (defectrt checkpoint, imgsz recorded)
    weights/best.safetensors   EMA weights of the epoch with the best fitness = 0.1 mAP50 + 0.9 mAP50-95
    weights/last_state.pt      everything needed to resume: raw + EMA weights, optimizer, epoch, RNG, config
    results.csv                one row per epoch
`resume=True` continues the newest unfinished run under PROJECT (or `resume=path` a given run).
"""
from __future__ import annotations

import collections
import copy
import csv
import dataclasses
import json
import math
import os
import random
import time

import numpy as np
import torch
from torch import nn

from defectrt.errors import UnsupportedFormat, UserInputError
from defectrt.fileio import atomic_path, next_run_dir
from defectrt.modelref import ModelRef, parse_imgsz
from defectrt.models import torchzip

STATE_FILE = "last_state.pt"
STATE_VERSION = 1
OPTIMIZERS = ("adamw", "sgd")
DEFAULT_LR = {"adamw": 0.002, "sgd": 0.01}


class TrainResult(object):
    """What a run produced: `save_dir`, `last`, `best` (paths), `epoch` (epochs completed), `epochs`
    (planned), `best_fitness`, `best_epoch`, `metrics` (latest validation), `history` (one dict per
    epoch), `finished` (all planned epochs done), `seconds` (wall time of this call)."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def __repr__(self):
        return "TrainResult(save_dir={!r}, epoch={}/{}, best_fitness={:.4f}, finished={})".format(
            self.save_dir, self.epoch, self.epochs, self.best_fitness if self.best_fitness is not None else -1,
            self.finished)


class ModelEMA(object):
    """Exponential moving average of the weights with a warm-up ramp of the decay.

    decay(u) = decay * (1 - exp(-u / tau)) after u updates: early weights change fast and are barely
    averaged, later ones are averaged over ~1 / (1 - decay(u)) updates.
    """

    def __init__(self, model, decay=0.9999, tau=2000.0, updates=0):
        self.ema = copy.deepcopy(model).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.tau = float(tau)
        self.updates = updates

    def current_decay(self):
        return self.decay * (1 - math.exp(-self.updates / self.tau))

    @torch.no_grad()
    def update(self, model):
        self.updates += 1
        d = self.current_decay()
        msd = model.state_dict()
        for k, v in self.ema.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(msd[k].detach(), alpha=1 - d)
            else:
                v.copy_(msd[k])


def ema_tau_for(total_updates):
    """The EMA ramp for a run of `total_updates` steps: 2000 for long runs (the usual value); short runs
    get a faster ramp so the final average spans ~total/20 steps instead of most of the run."""
    t = max(1.0, float(total_updates))
    return min(2000.0, t / math.log(max(t / 20.0, math.e)))


@torch.no_grad()
def recalibrate_bn(model, batches_):
    """Re-estimate every BatchNorm's running mean / variance as a plain average over `batches_`.

    Running statistics lag behind fast-changing weights (momentum 0.03), worse still for averaged
    EMA weights; on short runs the lag alone can wreck eval-mode predictions. Averaging fresh
    statistics of the final weights over a few batches ("precise BN") removes it.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or not batches_:
        return model
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    was_training = model.training
    model.train()
    for imgs in batches_:
        model(imgs)
    for m, mom in zip(bns, saved):
        m.momentum = mom
    model.train(was_training)
    return model


def fitness(metrics):
    if not metrics or metrics.get("map50") is None:
        return 0.0
    return 0.1 * float(metrics["map50"] or 0) + 0.9 * float(metrics["map50_95"] or 0)


def find_resumable(project):
    """The newest run folder under `project` with an unfinished state file."""
    if not os.path.isdir(project):
        raise UserInputError("--resume: no runs under {} (the folder does not exist)".format(project))
    found = []
    for d in os.listdir(project):
        state = os.path.join(project, d, "weights", STATE_FILE)
        if os.path.isfile(state):
            found.append((os.path.getmtime(state), os.path.join(project, d)))
    if not found:
        raise UserInputError("--resume: no run under {} has a {} to resume from".format(project, STATE_FILE))
    for _, d in sorted(found, reverse=True):
        if not _load_state(os.path.join(d, "weights", STATE_FILE)).get("finished"):
            return d
    raise UserInputError("--resume: every run under {} has finished (newest: {}); pass --epochs N with a larger N "
                         "and --resume RUN_DIR to extend one".format(project, sorted(found)[-1][1]))


def _run_dir_of(path):
    path = os.fspath(path)
    if os.path.isdir(path):
        return path
    if os.path.isfile(path):
        d = os.path.dirname(os.path.abspath(path))
        return os.path.dirname(d) if os.path.basename(d) == "weights" else d
    raise UserInputError("--resume {}: no such run folder or checkpoint".format(path))


def _load_state(path):
    """The resume state, read by models.torchzip, never by torch.load: torch.load dispatches on the file's
    format (a TorchScript archive named last_state.pt goes to torch.jit.load, which runs its code; torch < 2.4
    does so even with weights_only=True). Only plain data is accepted (_first_foreign)."""
    try:
        state = torchzip.load(path)
    except UserInputError as exc:  # torchzip names the file and the reason (TorchScript, truncated, ...)
        raise UserInputError("{} (--resume: only the weights/{} that `defectrt train` wrote can be resumed; "
                             "resume another run or start a new one)".format(exc, STATE_FILE)) from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise UnsupportedFormat("{}: not a defectrt training state (version {}); resume from a last.pt that `defectrt "
                                "train` wrote".format(path, STATE_VERSION))
    foreign = _first_foreign(state)
    if foreign is not None:
        raise UnsupportedFormat("{}: not a defectrt training state: it holds a {} at {}; a training state holds only "
                                "tensors, numbers, strings, lists and dicts".format(path, *foreign))
    return state


_STATE_LEAVES = (str, int, float, bool, type(None), torch.Tensor)


def _first_foreign(obj):
    """-> (type name, where) of the first value that is not plain state data, or None (each object once)."""
    stack, seen = [(obj, "the top")], set()
    while stack:
        value, where = stack.pop()
        if isinstance(value, _STATE_LEAVES):
            continue
        if type(value) not in (dict, collections.OrderedDict, list, tuple):
            return type(value).__name__, where
        if id(value) in seen:
            continue
        seen.add(id(value))
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for k, v in items:
            if not isinstance(k, _STATE_LEAVES):
                return type(k).__name__, "a key of {}".format(where)
            stack.append((v, "{}[{!r:.40}]".format(where, k)))
    return None


def _param_groups(model, weight_decay):
    """Three groups: conv/linear weights (decayed), normalisation weights and biases (not decayed)."""
    decay, no_decay, bias = [], [], []
    norm_types = (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)
    for module in model.modules():
        for pname, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            if pname == "bias":
                bias.append(p)
            elif isinstance(module, norm_types):
                no_decay.append(p)
            else:
                decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
        {"params": bias, "weight_decay": 0.0},
    ]


def _make_optimizer(model, name, lr, momentum, weight_decay):
    groups = _param_groups(model, weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(momentum, 0.999))
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=True)


def lr_factor(it, total, warmup, lrf, cos_lr=True):
    """LR multiplier at iteration `it` of `total`: linear warm-up over `warmup` iterations, then cosine
    (or linear) decay from 1 to `lrf` at the end."""
    progress = min(1.0, it / float(max(1, total)))
    if cos_lr:
        f = lrf + (1 - lrf) * 0.5 * (1 + math.cos(math.pi * progress))
    else:
        f = 1 - (1 - lrf) * progress
    if warmup > 0 and it < warmup:
        f *= (it + 1) / float(warmup)
    return f


def _set_seed(seed):
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def _resolve_model(model_ref, dataset):
    """Registry name -> new model for the dataset's classes; checkpoint / module -> that model (classes must fit)."""
    from defectrt.models.checkpoint import load as load_ckpt
    from defectrt.models.registry import _split, create

    names = list(dataset.names)
    if isinstance(model_ref, nn.Module):
        model = model_ref
    else:
        ref = os.fspath(model_ref)
        parsed = ModelRef.parse(ref)
        if parsed.kind in ("demo", "path"):
            from defectrt.models.checkpoint import resolve_model_ref

            model = resolve_model_ref(ref) if parsed.is_demo else load_ckpt(ref)
        elif _split(ref) is not None:
            return create(ref, nc=len(names), names=names)
        else:
            raise UserInputError("{!r} is neither a checkpoint nor a known model; see `defectrt models`".format(ref))
    if model.nc != len(names):
        raise UserInputError("the model has nc={} but the dataset has {} classes ({}); start from a registry name to "
                             "train a new head".format(model.nc, len(names), ", ".join(names)))
    return model


def _imgsz(imgsz):
    """Training crops and the model's largest stride: sides are multiples of 32."""
    return parse_imgsz(imgsz, "imgsz", multiple_of=32)


def validate(model, dataset, imgsz, conf=0.001, iou=0.6, batch=8):
    """mAP50 / mAP50-95 / P / R of `model` (left untouched) on `dataset` through the runtime Detector."""
    from defectrt.data.val import evaluate
    from defectrt.models.torch_backend import TorchBackend
    from defectrt.runtime.detector import Detector

    m = copy.deepcopy(model).float().eval()
    det = Detector(TorchBackend(m, imgsz=imgsz), conf=conf, iou=iou, max_det=300)
    res = evaluate(det, dataset, batch=batch)
    return {k: res.get(k) for k in ("precision", "recall", "map50", "map50_95")}


def _fmt(v):
    return "-" if v is None else "{:.3f}".format(v)


def train(model, data, epochs=100, imgsz=(640, 640), batch=16, lr=None, optimizer="adamw", box_loss="ciou",
          workers=0, seed=0, project="runs/train", name="exp", resume=False, device="cpu", threads=None,
          momentum=None, weight_decay=5e-4, lrf=0.01, cos_lr=True, warmup_epochs=3.0, augment=True,
          mosaic=0.0, close_mosaic=0, val_interval=None, cache=True, grad_clip=10.0, ema_tau=None,
          crop=None, bn_recal=64, stop_after=None, callbacks=None, progress=True, log=print, spec=None):
    """Train a YOLO11 detector; returns a TrainResult.

    model: registry name (new model with the dataset's classes), checkpoint path, `demo:NAME` or an
    nn.Module. data: a YOLO dataset (data.yaml or folder) with train and val splits. imgsz: (h, w),
    multiples of 32; training and the saved checkpoint use it. box_loss: "ciou" or "nwd" (SME-YOLO).
    augment: True (defaults), False, or a dict overriding DEFAULT_AUGMENT keys. mosaic: probability
    of a 2x2 mosaic, switched off for the last `close_mosaic` epochs. crop: (h, w) multiples of 32 -
    train on random windows of the letterboxed `imgsz` input (same pixel scale, less compute per
    image); validation and the checkpoint still use `imgsz`. bn_recal: before each validation and
    save, the BatchNorm statistics of (a copy of) the EMA weights are re-estimated on the epoch's
    last ~bn_recal training images (0: off). resume: False, True (newest
    unfinished run under `project`) or a run folder / checkpoint path; the saved configuration is
    used, except that an explicit `epochs` larger than the saved one extends the run and `workers` /
    `val_interval` may change (they do not change what is learnt).
    stop_after: stop (resumably) after this many epochs in this call. callbacks: {"on_epoch_end":
    fn(info dict)}; an exception raised there stops the run after that epoch's files are written.
    spec: the settings as one defectrt.options.TrainSpec (then give none of them as keywords).
    """
    from defectrt.data.dataset import load_dataset
    from defectrt.models.checkpoint import save as save_ckpt
    from defectrt.train.data import DEFAULT_AUGMENT, TrainDataset, batches, n_batches
    from defectrt.train.losses import DetectionLoss

    from defectrt.options import TrainSpec
    from defectrt.options import resolve as resolve_options

    spec = resolve_options(TrainSpec, spec, dict(
        epochs=epochs, imgsz=imgsz, batch=batch, lr=lr, optimizer=optimizer, box_loss=box_loss, workers=workers,
        seed=seed, project=project, name=name, resume=resume, device=device, threads=threads, momentum=momentum,
        weight_decay=weight_decay, lrf=lrf, cos_lr=cos_lr, warmup_epochs=warmup_epochs, augment=augment,
        mosaic=mosaic, close_mosaic=close_mosaic, val_interval=val_interval, cache=cache, grad_clip=grad_clip,
        ema_tau=ema_tau, crop=crop, bn_recal=bn_recal, stop_after=stop_after), "train")
    t_start = time.time()
    callbacks = callbacks or {}
    if spec.threads:
        torch.set_num_threads(int(spec.threads))
    state = None
    if spec.resume:
        save_dir = find_resumable(spec.project) if spec.resume is True else _run_dir_of(spec.resume)
        state_path = os.path.join(save_dir, "weights", STATE_FILE)
        if not os.path.isfile(state_path):
            raise UserInputError("--resume: {} has no {}".format(save_dir, os.path.join("weights", STATE_FILE)))
        state = _load_state(state_path)
        cfg = dict(state["config"])
        if spec.epochs is not None and int(spec.epochs) > cfg["epochs"]:
            cfg["epochs"] = int(spec.epochs)
        if state["epoch"] >= cfg["epochs"]:
            raise UserInputError("--resume: {} already finished its {} epochs; pass a larger --epochs to extend it"
                                 .format(save_dir, cfg["epochs"]))
        cfg["workers"] = spec.workers  # how to load data may change between calls, what to train may not
        if spec.val_interval:
            cfg["val_interval"] = max(1, int(spec.val_interval))
    else:
        spec = dataclasses.replace(spec, optimizer=spec.optimizer.lower(),
                                   epochs=100 if spec.epochs is None else spec.epochs)
        if spec.optimizer not in OPTIMIZERS:
            raise UserInputError("optimizer {!r}: use one of {}".format(spec.optimizer, ", ".join(OPTIMIZERS)))
        if spec.box_loss not in ("ciou", "nwd"):
            raise UserInputError("box loss {!r}: use ciou or nwd".format(spec.box_loss))
        if int(spec.epochs) < 1 or int(spec.batch) < 1:
            raise UserInputError("epochs and batch must be at least 1")
        aug = dict(DEFAULT_AUGMENT) if spec.augment is True else ({} if spec.augment is False else dict(DEFAULT_AUGMENT, **spec.augment))
        if aug and not (isinstance(spec.augment, dict) and "mosaic" in spec.augment):
            aug["mosaic"] = float(spec.mosaic)
        cfg = {
            "model": model if isinstance(model, str) else "<module>",
            "data": os.path.abspath(os.fspath(data)),
            "epochs": int(spec.epochs), "imgsz": list(_imgsz(spec.imgsz)), "batch": int(spec.batch),
            "optimizer": spec.optimizer, "lr": float(spec.lr if spec.lr is not None else DEFAULT_LR[spec.optimizer]),
            "momentum": float(spec.momentum if spec.momentum is not None else (0.9 if spec.optimizer == "adamw" else 0.937)),
            "weight_decay": float(spec.weight_decay), "lrf": float(spec.lrf), "cos_lr": bool(spec.cos_lr),
            "warmup_epochs": float(spec.warmup_epochs), "box_loss": spec.box_loss, "seed": int(spec.seed),
            "augment": aug or None, "close_mosaic": int(spec.close_mosaic), "val_interval": max(1, int(spec.val_interval or 1)),
            "grad_clip": float(spec.grad_clip) if spec.grad_clip else 0.0, "ema_tau": spec.ema_tau, "workers": spec.workers,
            "crop": list(_imgsz(spec.crop)) if spec.crop else None, "bn_recal": int(spec.bn_recal or 0),
        }
    imgsz = tuple(cfg["imgsz"])

    train_set = load_dataset(cfg["data"], "train")
    val_set = load_dataset(cfg["data"], "val")
    if len(train_set) == 0:
        raise UserInputError("{}: the train split has no images".format(cfg["data"]))

    if state is None:
        _set_seed(cfg["seed"])
        net = _resolve_model(model, train_set)
        save_dir = next_run_dir(spec.project, spec.name)
    else:
        from defectrt.models.checkpoint import load as load_ckpt

        net = load_ckpt(os.path.join(save_dir, "weights", "last.safetensors"))
        net.load_state_dict(state["model"])
    dev = torch.device(spec.device)
    net = net.to(dev).float()
    net.train()
    for p in net.parameters():
        p.requires_grad_(True)
    head = net.model[-1]
    head.dfl.conv.weight.requires_grad_(False)
    wdir = os.path.join(save_dir, "weights")
    os.makedirs(wdir, exist_ok=True)

    ds = TrainDataset(train_set, imgsz, augment=cfg["augment"] if cfg["augment"] else None, seed=cfg["seed"],
                      cache=spec.cache, crop=cfg.get("crop"))
    if spec.cache:
        it = range(len(ds))
        if progress:
            from tqdm import tqdm

            it = tqdm(it, desc="caching", unit="img", leave=False)
        for i in it:
            ds.load(i)
    nb = n_batches(len(ds), cfg["batch"])
    total_iters = cfg["epochs"] * nb
    warmup_iters = int(round(cfg["warmup_epochs"] * nb)) if cfg["warmup_epochs"] > 0 else 0
    warmup_iters = min(max(warmup_iters, min(100, total_iters // 3)), total_iters // 2) if warmup_iters else 0
    tau = cfg["ema_tau"] or ema_tau_for(total_iters)

    opt = _make_optimizer(net, cfg["optimizer"], cfg["lr"], cfg["momentum"], cfg["weight_decay"])
    ema = ModelEMA(net, tau=tau)
    criterion = DetectionLoss(net, box_loss=cfg["box_loss"])
    start_epoch, best_fitness, best_epoch, history = 0, None, None, []
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        ema.ema.load_state_dict(state["ema"])
        ema.updates = int(state["ema_updates"])
        start_epoch = int(state["epoch"])
        best_fitness = state.get("best_fitness")
        best_epoch = state.get("best_epoch")
        history = json.loads(state.get("history", "[]"))
        torch.set_rng_state(state["torch_rng"])
        log("resuming {} from epoch {}/{}".format(save_dir, start_epoch, cfg["epochs"]))
    else:
        with open(os.path.join(save_dir, "args.json"), "w") as f:
            json.dump(cfg, f, indent=1)
        log("training {} on {} ({} train / {} val images) at {}x{}{} for {} epochs -> {}".format(
            cfg["model"], cfg["data"], len(train_set), len(val_set), imgsz[0], imgsz[1],
            " (random {}x{} crops)".format(*cfg["crop"]) if cfg["crop"] else "", cfg["epochs"], save_dir))

    metrics = history[-1]["metrics"] if history else None
    epoch = start_epoch
    done_here = 0
    stop_exc = None
    for epoch_idx in range(start_epoch, cfg["epochs"]):
        t0 = time.time()
        net.train()
        if cfg["augment"] and cfg["close_mosaic"] and epoch_idx >= cfg["epochs"] - cfg["close_mosaic"]:
            ds.hyp["mosaic"] = 0.0
        elif cfg["augment"]:
            ds.hyp["mosaic"] = cfg["augment"].get("mosaic", 0.0)
        loader = batches(ds, cfg["batch"], epoch_idx, cfg["seed"], shuffle=True, workers=cfg["workers"])
        if progress:
            from tqdm import tqdm

            loader = tqdm(loader, total=nb, desc="epoch {}/{}".format(epoch_idx + 1, cfg["epochs"]), unit="batch",
                          leave=False)
        sums = torch.zeros(3)
        recal_batches = []
        n_recal = n_batches(cfg.get("bn_recal", 0), cfg["batch"]) if cfg.get("bn_recal", 0) else 0
        for i, (imgs, targets) in enumerate(loader):
            if n_recal and i >= nb - n_recal:
                recal_batches.append(imgs)
            it = epoch_idx * nb + i
            f = lr_factor(it, total_iters, warmup_iters, cfg["lrf"], cfg["cos_lr"])
            for g in opt.param_groups:
                g["lr"] = cfg["lr"] * f
                if cfg["optimizer"] == "sgd" and it < warmup_iters:
                    g["momentum"] = 0.8 + (cfg["momentum"] - 0.8) * it / float(max(1, warmup_iters))
                elif cfg["optimizer"] == "sgd":
                    g["momentum"] = cfg["momentum"]
            preds = net(imgs.to(dev))
            loss, items = criterion(preds, targets.to(dev))
            if not torch.isfinite(loss):
                raise RuntimeError("the loss became {} at epoch {}, batch {}; lower --lr".format(
                    float(loss), epoch_idx + 1, i))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg["grad_clip"]:
                nn.utils.clip_grad_norm_(net.parameters(), cfg["grad_clip"])
            opt.step()
            ema.update(net)
            sums += items.cpu()
            if progress:
                mean = sums / (i + 1)
                loader.set_postfix(box="{:.3f}".format(mean[0]), cls="{:.3f}".format(mean[1]),
                                   dfl="{:.3f}".format(mean[2]))
        losses = (sums / nb).tolist()
        t_train = time.time() - t0
        last_epoch = epoch_idx + 1 == cfg["epochs"]
        final = recalibrate_bn(copy.deepcopy(ema.ema), [b.to(dev) for b in recal_batches]).eval()
        del recal_batches
        if (epoch_idx + 1) % cfg["val_interval"] == 0 or last_epoch or (
                spec.stop_after is not None and done_here + 1 >= spec.stop_after):
            metrics = validate(final, val_set, imgsz) if len(val_set) else None
        else:
            metrics = None
        fit = fitness(metrics) if metrics else None
        epoch = epoch_idx + 1
        improved = fit is not None and (best_fitness is None or fit > best_fitness)
        if improved:
            best_fitness, best_epoch = fit, epoch
        row = {"epoch": epoch, "box": losses[0], "cls": losses[1], "dfl": losses[2], "lr": opt.param_groups[0]["lr"],
               "metrics": metrics, "fitness": fit, "train_s": t_train, "epoch_s": time.time() - t0}
        history.append(row)
        extra = {"train": {"epoch": epoch, "epochs": cfg["epochs"], "data": cfg["data"], "box_loss": cfg["box_loss"],
                           "seed": cfg["seed"], "metrics": metrics, "fitness": fit}}
        save_ckpt(final, os.path.join(wdir, "last.safetensors"), imgsz=imgsz, extra=extra, force=True)
        if improved:
            save_ckpt(final, os.path.join(wdir, "best.safetensors"), imgsz=imgsz, extra=extra, force=True)
        del final
        finished = epoch >= cfg["epochs"]
        st = {
            "version": STATE_VERSION, "epoch": epoch, "finished": finished, "config": cfg,
            "model": net.state_dict(), "ema": ema.ema.state_dict(), "ema_updates": ema.updates,
            "optimizer": opt.state_dict(), "best_fitness": best_fitness, "best_epoch": best_epoch,
            "torch_rng": torch.get_rng_state(), "history": json.dumps(history),
        }
        with atomic_path(os.path.join(wdir, STATE_FILE), force=True) as tmp:
            torch.save(st, tmp)
        _append_csv(os.path.join(save_dir, "results.csv"), row)
        m = metrics or {}
        log("epoch {}/{}  box {:.4f} cls {:.4f} dfl {:.4f}  P {} R {} mAP50 {} mAP50-95 {}  lr {:.2e}  {:.0f}s{}".format(
            epoch, cfg["epochs"], losses[0], losses[1], losses[2], _fmt(m.get("precision")), _fmt(m.get("recall")),
            _fmt(m.get("map50")), _fmt(m.get("map50_95")), row["lr"], row["epoch_s"], "  *best" if improved else ""))
        done_here += 1
        cb = callbacks.get("on_epoch_end")
        if cb is not None:
            try:
                cb({"epoch": epoch, "epochs": cfg["epochs"], "metrics": metrics, "losses": losses,
                    "save_dir": save_dir})
            except BaseException as exc:  # noqa: B902 - any stop request ends the run cleanly, resumable
                stop_exc = exc
                break
        if spec.stop_after is not None and done_here >= spec.stop_after and not finished:
            break
    finished = epoch >= cfg["epochs"]
    result = TrainResult(save_dir=save_dir, last=os.path.join(wdir, "last.safetensors"),
                         best=os.path.join(wdir, "best.safetensors") if best_epoch else None, epoch=epoch,
                         epochs=cfg["epochs"], best_fitness=best_fitness, best_epoch=best_epoch, metrics=metrics,
                         history=history, finished=finished, seconds=time.time() - t_start)
    if stop_exc is not None:
        stop_exc.train_result = result
        raise stop_exc
    if finished:
        log("done: {} epochs, {:.1f} min of training and validation in all ({:.1f} min in this call); best fitness {} "
            "at epoch {}; weights in {}".format(epoch, sum(h["epoch_s"] for h in history) / 60.0, result.seconds / 60.0,
                                               _fmt(best_fitness), best_epoch, wdir))
    else:
        log("stopped after epoch {}/{}; continue with --resume {}".format(epoch, cfg["epochs"], save_dir))
    return result


def _append_csv(path, row):
    m = row["metrics"] or {}
    flat = {"epoch": row["epoch"], "box_loss": row["box"], "cls_loss": row["cls"], "dfl_loss": row["dfl"],
            "precision": m.get("precision"), "recall": m.get("recall"), "map50": m.get("map50"),
            "map50_95": m.get("map50_95"), "fitness": row["fitness"], "lr": row["lr"], "epoch_s": row["epoch_s"]}
    new = not os.path.exists(path)
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(flat))
        if new:
            w.writeheader()
        w.writerow(flat)
