"""`defectrt data synth`: procedurally generated YOLO datasets (screw and PCB defects)."""
from __future__ import annotations

from defectrt.cli.options import imgsz_arg


def register(sub):
    p = sub.add_parser("data", help="datasets: generate synthetic defect datasets")
    dsub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    s = dsub.add_parser(
        "synth",
        help="generate a synthetic YOLO dataset (screw or PCB defects)",
        description="Render a YOLO-format dataset: DIR/images/{train,val}, DIR/labels/{train,val}, DIR/data.yaml. "
        "The same --seed always gives the same images and labels.",
    )
    s.add_argument("--kind", choices=("screw", "pcb"), required=True,
                   help="screw: scratch, dent, coating, unprocessed (default 384x672); "
                   "pcb: the six PKU-PCB defects (default 640x640)")
    s.add_argument("--n", type=int, default=500, help="number of images, train + val (default 500)")
    s.add_argument("--imgsz", type=int, nargs="+", metavar="N", help="N or H W (default: per kind)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0); use another for a fresh val set")
    s.add_argument("--val-fraction", type=float, default=0.2, help="share of images in val (default 0.2)")
    s.add_argument("--format", choices=("png", "jpg"), default="png", help="image format (jpg: quality 95)")
    s.add_argument("-o", "--output", required=True, metavar="DIR", help="dataset folder to write")
    s.add_argument("--force", action="store_true", help="replace DIR if it exists")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=run_synth)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def run_synth(args):
    from defectrt.data.synth import write_dataset

    imgsz = imgsz_arg(args.imgsz)
    s = write_dataset(args.output, kind=args.kind, n=args.n, imgsz=imgsz, seed=args.seed,
                      val_fraction=args.val_fraction, fmt=args.format, force=args.force, progress=not args.quiet)
    objects = sum(s["instances"].values())
    print("wrote {} train + {} val images ({}x{}, {} objects: {}) to {} in {:.1f} s ({:.1f} ms per image to render)"
          .format(s["train"], s["val"], s["imgsz"][0], s["imgsz"][1], objects,
                  ", ".join("{} {}".format(v, k) for k, v in s["instances"].items()), s["path"], s["seconds"],
                  s["ms_per_image_generate"]))
    return 0
