"""`defectrt train`: train a YOLO11 detector on a YOLO dataset (compact CPU-friendly trainer)."""
from __future__ import annotations

from defectrt.cli.options import add_images_per_call, add_imgsz, add_threads, train_spec


def register(sub):
    p = sub.add_parser(
        "train",
        help="train a detector (registry variant or checkpoint) on a YOLO dataset",
        description="Train with task-aligned assignment, BCE + CIoU (or NWD) + DFL losses, EMA weights and a "
        "warm-up + cosine LR schedule. Writes PROJECT/NAME (NAME2, NAME3, ... if taken): weights/last.safetensors "
        "every epoch, weights/best.safetensors (best 0.1 mAP50 + 0.9 mAP50-95 on val), weights/last_state.pt "
        "(for --resume) and results.csv.",
    )
    p.add_argument("--model", help="registry variant (e.g. yolo11n-dysample), checkpoint or demo:NAME")
    p.add_argument("--data", help="data.yaml, or a folder with data.yaml or images/ + labels/ (train and val splits)")
    p.add_argument("--epochs", type=int, help="epochs (default 100; with --resume: extend the run to this many)")
    add_imgsz(p, help="N or H W, multiples of 32 (default 640); recorded in the checkpoints", default=[640])
    p.add_argument("--crop", type=int, nargs=2, metavar=("H", "W"),
                   help="train on random H x W windows of the letterboxed --imgsz input (same scale, less compute)")
    add_images_per_call(p, 16, "images per step (default 16)")
    p.add_argument("--lr", type=float, help="peak learning rate (default 0.002 AdamW, 0.01 SGD)")
    p.add_argument("--lrf", type=float, default=0.01, help="final LR as a fraction of the peak (default 0.01)")
    p.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw", help="default adamw")
    p.add_argument("--linear-lr", action="store_true", help="linear instead of cosine LR decay")
    p.add_argument("--warmup-epochs", type=float, default=3.0, help="linear LR warm-up (default 3 epochs)")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="default 5e-4")
    p.add_argument("--box-loss", choices=("ciou", "nwd"), default="ciou",
                   help="box regression loss: ciou (YOLO11) or nwd (SME-YOLO normalized Wasserstein distance)")
    p.add_argument("--mosaic", type=float, default=0.0, help="probability of 2x2 mosaic augmentation (default 0)")
    p.add_argument("--close-mosaic", type=int, default=0, help="no mosaic in the last N epochs (default 0)")
    p.add_argument("--no-augment", action="store_true", help="no augmentation at all")
    p.add_argument("--val-interval", type=int, help="validate every N epochs and at the end (default 1; may be "
                   "changed with --resume)")
    p.add_argument("--workers", type=int, default=0, help="data-loading processes (default 0: in the main one)")
    add_threads(p, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0, help="default 0")
    p.add_argument("--project", default="runs/train", help="folder of runs (default runs/train)")
    p.add_argument("--name", default="exp", help="run name (default exp; exp2, exp3 ... when taken)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="RUN",
                   help="continue an interrupted run: the newest unfinished one under --project, or RUN "
                   "(a run folder or its weights/last.safetensors)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bars (the per-epoch lines stay)")
    p.set_defaults(func=run)


def run(args):
    import sys

    from defectrt.errors import UserInputError
    from defectrt.train import train

    if not args.resume and (not args.model or not args.data):
        raise UserInputError("--model and --data are required (unless --resume)")
    spec = train_spec(args)

    def log(msg):
        print(msg, flush=True)

    res = train(args.model, args.data, spec=spec, progress=not args.quiet and sys.stderr.isatty(), log=log)
    m = res.metrics or {}
    print("best: {} (epoch {})  last: {}  final val mAP50 {} mAP50-95 {}".format(
        res.best, res.best_epoch, res.last, m.get("map50"), m.get("map50_95")))
    return 0
