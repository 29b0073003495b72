"""Time the Ultralytics predictor on an ONNX file (end to end: letterbox, ONNX Runtime, NMS) and write JSON.

Run ONLY with the python of a throwaway environment (Ultralytics is AGPL: defectrt never imports it), e.g.
    python3 -m venv /tmp/ulvenv-bench
    /tmp/ulvenv-bench/bin/pip install torch==2.14.1 torchvision==0.29.1 ultralytics==8.4.190 onnxruntime
    /tmp/ulvenv-bench/bin/python benchmarks/ultralytics_predictor.py MODEL.onnx IMAGES_DIR --out u.json
benchmarks/bench_cpu_backends.py calls it once per round, interleaved with its own cells, and reads the JSON.
This script uses nothing from defectrt.
"""
import argparse
import json
import os
import statistics
import sys
import time


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model")
    p.add_argument("images")
    p.add_argument("--out", required=True)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (also torch / OpenCV)")
    p.add_argument("--imgsz", type=int, nargs=2, default=[384, 672])
    p.add_argument("--conf", type=float, default=0.25)
    p.add_argument("--iou", type=float, default=0.45)
    args = p.parse_args()

    import cv2
    import onnxruntime as ort
    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    original = ort.InferenceSession

    class Session(original):  # Ultralytics builds its own session: give it the same thread count as ours
        def __init__(self, path, sess_options=None, *a, **kw):
            sess_options = sess_options or ort.SessionOptions()
            sess_options.intra_op_num_threads = args.threads
            sess_options.inter_op_num_threads = 1
            super().__init__(path, sess_options, *a, **kw)

    ort.InferenceSession = Session
    from ultralytics import YOLO

    files = sorted(f for f in os.listdir(args.images) if f.lower().endswith((".png", ".jpg", ".jpeg", ".bmp")))
    images = [cv2.imread(os.path.join(args.images, f)) for f in files[:8]]
    model = YOLO(args.model, task="detect")
    kw = dict(imgsz=args.imgsz, conf=args.conf, iou=args.iou, device="cpu", verbose=False)
    counts = []
    for i in range(args.warmup):
        model.predict(images[i % len(images)], **kw)
    times = []
    for i in range(args.iters):
        img = images[i % len(images)]
        t0 = time.perf_counter()
        res = model.predict(img, **kw)
        times.append((time.perf_counter() - t0) * 1e3)
        counts.append(len(res[0].boxes))
    json.dump({"median_ms": statistics.median(times), "times_ms": times, "detections": counts[:len(images)],
               "ultralytics": __import__("ultralytics").__version__, "torch": torch.__version__,
               "onnxruntime": ort.__version__, "threads": args.threads, "python": sys.version.split()[0]},
              open(args.out, "w"), indent=1)


if __name__ == "__main__":
    main()
