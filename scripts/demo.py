"""The main job end to end on the embedded default (CPU, ONNX Runtime): `make demo`.

zoo -> synthetic images -> deployment bundle from the shipped demo model -> detect -> val -> bench.
Every step is the public command a user would type; outputs go to build/demo/ (replaced each run).
"""
import os
import shlex
import subprocess
import sys

OUT = os.path.join("build", "demo")


def step(title, *args):
    cmd = [sys.executable, "-m", "defectrt", *args]
    print("\n== {}\n$ defectrt {}".format(title, " ".join(shlex.quote(a) for a in args)), flush=True)
    subprocess.run(cmd, check=True)


def main():
    os.makedirs(OUT, exist_ok=True)
    data = os.path.join(OUT, "screw-data")
    bundle = os.path.join(OUT, "screw.bundle")
    step("the model zoo (scale n, 4 classes)", "models", "--scales", "n", "--nc", "4")
    step("a fresh synthetic screw-defect set the demo model never saw",
         "data", "synth", "--kind", "screw", "--n", "24", "--seed", "2026", "--val-fraction", "0.5", "-o", data, "--force")
    step("deployment bundle from demo:screw (FP32 ONNX, manifest, golden I/O; engine where TensorRT exists)",
         "export", "build", "demo:screw", "-o", bundle, "--precision", "fp32", "--val", data, "--force")
    step("detect on the images through ONNX Runtime",
         "detect", os.path.join(data, "images", "val"), "--model", bundle, "--save-dir", os.path.join(OUT, "detect"), "--force")
    step("latency report (trtexec-style)", "bench", bundle, "--iters", "50", "--md", os.path.join(OUT, "bench.md"),
         "--json", os.path.join(OUT, "bench.json"), "--force")
    print("\nDone: outputs in {}".format(OUT))


if __name__ == "__main__":
    main()
