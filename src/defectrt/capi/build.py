"""Build the native C ABI library from a repository clone: `python -m defectrt.capi.build [-o DIR]`.

Runs the CMake build of native/ (the one build command of native/README.md) with ONNX Runtime taken from
the `onnxruntime` wheel of this environment (its libonnxruntime.so.1.x) and the C headers given by
--onnxruntime-include (default: ../shared/third_party/onnxruntime/include beside the clone, else
ONNXRUNTIME_ROOT's), then copies into DIR (default ./build/capi):

    libdefectrt.so* (Linux) or defectrt.dll + defectrt.lib (Windows)
    defectrt.h      the header to compile against
    libonnxruntime.so.1 / onnxruntime.dll, which the library loads beside itself

The library links no Python: Python is only the convenience driver here.
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
NATIVE = os.path.join(ROOT, "native")
DEFAULT_OUT = os.path.join("build", "capi")


class BuildError(Exception):
    """The library cannot be built here; the message says what to install or change."""


def onnxruntime_library():
    try:
        import onnxruntime
    except ImportError:
        raise BuildError("onnxruntime is not installed in this Python; pass --onnxruntime-root with an ONNX Runtime "
                         "release package instead")
    capi = os.path.join(os.path.dirname(os.path.abspath(onnxruntime.__file__)), "capi")
    found = sorted(glob.glob(os.path.join(capi, "libonnxruntime.so.1*")) + glob.glob(os.path.join(capi, "onnxruntime.dll")))
    if not found:
        raise BuildError("no libonnxruntime.so.1.x in {}; pass --onnxruntime-root".format(capi))
    return found[-1]


def cmake_args(args):
    if args.onnxruntime_root:
        return ["-DONNXRUNTIME_ROOT=" + os.path.abspath(args.onnxruntime_root)]
    include = args.onnxruntime_include or os.path.join(os.path.dirname(ROOT), "shared", "third_party", "onnxruntime",
                                                       "include")
    if not os.path.isfile(os.path.join(include, "onnxruntime_c_api.h")):
        raise BuildError("ONNX Runtime's C headers are not at {}: pass --onnxruntime-include DIR or --onnxruntime-root "
                         "(an ONNX Runtime release package, see native/README.md)".format(include))
    return ["-DONNXRUNTIME_INCLUDE_DIR=" + include, "-DONNXRUNTIME_LIB=" + onnxruntime_library()]


def build(out, args):
    if not os.path.isfile(os.path.join(NATIVE, "CMakeLists.txt")):
        raise BuildError("{} is missing: the native library builds from a repository clone".format(NATIVE))
    cmake = shutil.which("cmake")
    if cmake is None:
        raise BuildError("cmake not found; install it (apt-get install cmake / pip install cmake)")
    work = os.path.join(ROOT, "build", "native")
    for cmd in ([cmake, "-S", NATIVE, "-B", work, "-DCMAKE_BUILD_TYPE=Release"] + cmake_args(args),
                [cmake, "--build", work, "--config", "Release", "-j", str(args.jobs)]):
        if subprocess.call(cmd) != 0:
            raise BuildError("command failed: {}".format(" ".join(cmd)))
    os.makedirs(out, exist_ok=True)
    names = glob.glob(os.path.join(work, "libdefectrt.so*")) + glob.glob(os.path.join(work, "Release", "defectrt.*"))
    names += glob.glob(os.path.join(work, "onnxruntime", "libonnxruntime.so.1"))
    for path in names + [os.path.join(NATIVE, "include", "defectrt.h")]:
        shutil.copy2(os.path.realpath(path), os.path.join(out, os.path.basename(path)))
    lib = "defectrt.dll" if sys.platform == "win32" else "libdefectrt.so"
    return os.path.join(out, lib)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m defectrt.capi.build", description=__doc__.splitlines()[0])
    p.add_argument("-o", "--output", default=DEFAULT_OUT, help="folder for the library and header (default build/capi)")
    p.add_argument("--onnxruntime-root", help="an ONNX Runtime release package (include/ and lib/)")
    p.add_argument("--onnxruntime-include", help="folder with onnxruntime_c_api.h (with the wheel's library)")
    p.add_argument("-j", "--jobs", type=int, default=2)
    args = p.parse_args(argv)
    try:
        print(build(os.path.abspath(args.output), args))
    except BuildError as exc:
        print("error: {}".format(exc), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
