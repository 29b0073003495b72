"""`defectrt models`: the zoo with parameters and GFLOPs computed from each model."""
from __future__ import annotations

import json

from defectrt.cli.options import imgsz_arg


def register(sub):
    p = sub.add_parser("models", help="list the model zoo with parameters and GFLOPs")
    p.add_argument("--imgsz", type=int, nargs="+", default=[640], metavar="N", help="image size: N or H W (default 640)")
    p.add_argument("--nc", type=int, default=80, help="number of classes (default 80)")
    p.add_argument("--scales", default="nsmlx", help="scales to list, e.g. 'n' or 'ns' (default nsmlx)")
    p.add_argument("--variant", action="append", help="only these variants (repeatable), e.g. yolo11n-dysample")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--recompute", action="store_true", help="compute every row from the models instead of the shipped cache")
    p.set_defaults(func=run)


def table(imgsz=640, nc=80, scales="nsmlx", variants=None, recompute=False):
    from defectrt.zoo_table import table as zoo_table  # issue 19: cached default table, the rest on demand

    return zoo_table(imgsz, nc, scales, variants, recompute=recompute)


def run(args):
    imgsz = imgsz_arg(args.imgsz)
    rows = table(imgsz, args.nc, args.scales, args.variant, args.recompute)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    size = "{}x{}".format(*imgsz)
    print("{:<20} {:>12} {:>10}".format("model", "params", "GFLOPs@" + size))
    for r in rows:
        print("{:<20} {:>12,} {:>10.2f}".format(r["model"], r["params"], r["gflops"]))
    print("(nc={}, BN fused, computed from the models; default rows cached, --recompute to redo)".format(args.nc))
    return 0
