"""Latency of the YOLO11n variants at FP32 / FP16 / INT8 and at 640x640 / 384x672 (ONNX Runtime, CPU).

    .venv/bin/python benchmarks/bench_variants.py [--quick] [--repeats N] [--duration-s S] [--threads N] [--out DIR]

Variants: yolo11n (baseline), yolo11n-dysample with native GridSample and with lowered (gather) sampling,
yolo11n-eucb, yolo11n-sme; nc=4, random weights (latency does not depend on the weights).  Exported with
defectrt.export.onnx.export_onnx; FP16 with defectrt.export.precision.convert_fp16, INT8 with
quantize_int8(..., flavour="cpu") on synthetic calibration images (8 with --quick, else 64; latency does
not depend on calibration quality).  A precision whose function or dependency (ModelOpt for FP16) is
missing is recorded as "not available"; one that fails, as "failed" with the error.  Batch 1, the model call only
(pre/post-processing are the same for every variant; `defectrt bench --end-to-end` measures them).

Writes benchmarks/results/variants/{results.json, results.md, variants.png}, replacing that folder.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # noqa: E402

NAME = "variants"
VARIANTS = (  # (label, registry name, grid_sample)
    ("yolo11n", "yolo11n", "native"),
    ("yolo11n-dysample (native)", "yolo11n-dysample", "native"),
    ("yolo11n-dysample (lowered)", "yolo11n-dysample", "lowered"),
    ("yolo11n-eucb", "yolo11n-eucb", "native"),
    ("yolo11n-sme", "yolo11n-sme", "native"),
)
PRECISIONS = ("fp32", "fp16", "int8")
SIZES = ((640, 640), (384, 672))
NC = 4


def export_fp32(registry_name, grid_sample, imgsz, path):
    from defectrt.export.onnx import export_onnx
    from defectrt.models import create

    model = create(registry_name, nc=NC).eval()
    export_onnx(model, path, imgsz=imgsz, grid_sample=grid_sample, force=True)


def _failure(what, exc):
    """A missing optional dependency (e.g. ModelOpt for FP16) is "not available"; anything else "failed"."""
    text = "{}: {}: {}".format(what, type(exc).__name__, exc)
    missing = isinstance(exc, ImportError) or "not installed" in str(exc)
    return ("not available" if missing else "failed"), text


def convert(precision, fp32_path, out_path, calib_dir, calib_count):
    """-> (status, error). Missing functions or dependencies give "not available", not a crash."""
    try:
        from defectrt.export import precision as prec
    except ImportError as exc:
        return "not available", "defectrt.export.precision is missing ({})".format(exc)
    if precision == "fp16":
        fn = getattr(prec, "convert_fp16", None)
        if fn is None:
            return "not available", "defectrt.export.precision.convert_fp16 is missing"
        try:
            fn(fp32_path, out_path, force=True)
        except Exception as exc:
            return _failure("convert_fp16", exc)
        return "ok", None
    fn = getattr(prec, "quantize_int8", None)
    if fn is None:
        return "not available", "defectrt.export.precision.quantize_int8 is missing"
    try:
        fn(fp32_path, out_path, calib_dir, calib_count=calib_count, flavour="cpu", force=True)
    except Exception as exc:
        return _failure("quantize_int8", exc)
    return "ok", None


def calibration_dir(folder, imgsz, n):
    """Write `n` synthetic calibration images (PNG) into `folder`; -> folder."""
    import cv2

    os.makedirs(folder, exist_ok=True)
    for i, img in enumerate(C.synthetic_calibration(n, imgsz)):
        cv2.imwrite(os.path.join(folder, "calib_{:03d}.png".format(i)), img)
    return folder


def main(argv=None):
    args = C.base_parser(__doc__.splitlines()[0]).parse_args(argv)
    settings = C.settings_from(args)
    from defectrt.bench.flops import count_flops
    from defectrt.runtime.detector import Detector

    peak = C.measure_peak()
    report = C.new_report(NAME, settings, peak)
    cells, entries = [], []
    flops = {}
    with C.workdir() as tmp:
        for imgsz in SIZES:
            size = "{}x{}".format(*imgsz)
            n_calib = 8 if settings["quick"] else 64
            calib = calibration_dir(os.path.join(tmp, "calib_" + size), imgsz, n_calib)
            for label, reg, gs in VARIANTS:
                fp32 = os.path.join(tmp, "{}_{}_{}_fp32.onnx".format(reg, gs, size))
                C.log("export {} {}".format(label, size))
                try:
                    export_fp32(reg, gs, imgsz, fp32)
                except Exception as exc:
                    for p in PRECISIONS:
                        entries.append(C.unavailable(label, "failed", "export: {}: {}".format(type(exc).__name__, exc),
                                                     precision=p, imgsz=list(imgsz), batch=1, variant=reg))
                    continue
                flops[(label, size)] = count_flops(fp32, batch=1)["gflops"]
                for p in PRECISIONS:
                    path = fp32 if p == "fp32" else fp32.replace("_fp32.onnx", "_{}.onnx".format(p))
                    if p != "fp32":
                        C.log("{} {} {}".format(p, label, size))
                        status, error = convert(p, fp32, path, calib, n_calib)
                        if status != "ok":
                            entries.append(C.unavailable(label, status, error, precision=p, imgsz=list(imgsz), batch=1,
                                                         variant=reg))
                            continue
                    try:
                        det = Detector(path, backend="onnxruntime", threads=settings["threads"])
                    except Exception as exc:
                        entries.append(C.unavailable(label, "failed", "load: {}: {}".format(type(exc).__name__, exc),
                                                     precision=p, imgsz=list(imgsz), batch=1, variant=reg))
                        continue
                    fields = {"model": label, "precision": p, "imgsz": list(imgsz), "variant": reg, "grid_sample": gs,
                              "backend": "onnxruntime", "providers": ["CPUExecutionProvider"],
                              "source": os.path.basename(path), "size_bytes": os.path.getsize(path)}
                    cells.append(C.infer_cell((label, p, size), det, 1, fields))
        C.run_rounds(cells, settings)
    results = {}
    for cell in cells:
        label, p, size = cell.key
        results[cell.key] = C.cell_result(cell, flops.get((label, size)), peak["gflops"])
    for (label, p, size), e in results.items():
        base = results.get(("yolo11n", "fp32", size))
        same_fp32 = results.get((label, "fp32", size))
        e["ratio_vs_baseline_fp32"] = e["median_ms"] / base["median_ms"] if base else None
        e["speedup_vs_own_fp32"] = same_fp32["median_ms"] / e["median_ms"] if same_fp32 else None
    report["results"] = list(results.values()) + entries
    return C.publish(NAME, args.out, report, markdown, plot)


def _order(e):
    labels = [v[0] for v in VARIANTS]
    sizes = ["{}x{}".format(*s) for s in SIZES]
    size = "{}x{}".format(*e["imgsz"])
    return (sizes.index(size) if size in sizes else 9, labels.index(e["model"]) if e["model"] in labels else 9,
            PRECISIONS.index(e.get("precision")) if e.get("precision") in PRECISIONS else 9)


def markdown(report):
    rows = []
    for e in sorted(report["results"], key=_order):
        size = "{}x{}".format(*e["imgsz"])
        if e["status"] != "ok":
            rows.append([e["model"], e.get("precision"), size] + ["-"] * 8 + ["{}: {}".format(e["status"], e.get("error", ""))])
            continue
        comp = e["stages"].get("compute") or e["stages"]["end_to_end"]
        fl = e["flops"]
        rows.append([
            e["model"], e["precision"], size, C.fmt(e["median_ms"]),
            "{}..{}".format(C.fmt(e["spread_ms"][0]), C.fmt(e["spread_ms"][1])), C.fmt(comp["p99"]),
            C.fmt(e["throughput"]["images_per_s"]), C.fmt(e.get("ratio_vs_baseline_fp32"), 3),
            C.fmt(e.get("speedup_vs_own_fp32"), 3), C.fmt(fl["gflops_per_image"]),
            "{:.1f}%".format(100 * fl["efficiency"]) if fl.get("efficiency") is not None else "-", "ok",
        ])
    header = ["model", "precision", "imgsz", "median (ms)", "spread (ms)", "p99 (ms)", "images/s", "x baseline fp32",
              "speed-up vs own fp32", "GFLOPs/img", "efficiency", "status"]
    head = C.header_md(report, "YOLO11n variants x precision x input size (ONNX Runtime, CPU, batch 1)",
                       "x baseline fp32 = latency / yolo11n FP32 at the same size (same run); speed-up vs own fp32 = "
                       "the variant's FP32 latency / this latency.")
    return head + "\n" + C.md_table(header, rows) + "\n"


def plot(report, path):
    plt = C.pyplot()
    fig, axes = plt.subplots(1, len(SIZES), figsize=(7 * len(SIZES), 4.5), sharey=False)
    labels = [v[0] for v in VARIANTS]
    width = 0.8 / len(PRECISIONS)
    for ax, imgsz in zip(axes, SIZES):
        for j, p in enumerate(PRECISIONS):
            xs, ys, errs = [], [], []
            for i, label in enumerate(labels):
                e = next((r for r in report["results"] if r["model"] == label and r.get("precision") == p
                          and tuple(r["imgsz"]) == imgsz and r["status"] == "ok"), None)
                if e is None:
                    continue
                xs.append(i + (j - 1) * width)
                ys.append(e["median_ms"])
                errs.append([[e["median_ms"] - e["spread_ms"][0]], [e["spread_ms"][1] - e["median_ms"]]])
            if xs:
                yerr = [[a[0][0] for a in errs], [a[1][0] for a in errs]]
                ax.bar(xs, ys, width, yerr=yerr, capsize=2, label=p.upper())
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels([label.replace(" (", "\n(") for label in labels], fontsize=8)
        ax.set_ylabel("median latency, model call (ms)")
        ax.set_title("{}x{}, batch 1, ONNX Runtime CPU".format(*imgsz))
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("YOLO11n variants: {}".format(report["machine"]["label"]))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    from defectrt.errors import DefectrtError

    try:
        sys.exit(main())
    except DefectrtError as exc:
        print("bench_variants: error: {}".format(exc), file=sys.stderr)
        sys.exit(1)
