#!/usr/bin/env python3
"""Compile + link matrix of the native TensorRT code against the real headers of every TensorRT we claim.

For each version folder in ../shared/third_party/tensorrt/<v>/include this builds, with that version's headers:
  * a stub libnvinfer (stub_nvinfer.cpp: only the C entry points the code calls, checked against the headers),
  * libdefectrt_trt.so: the TensorRT backend (native/src/tensorrt) + the GPU letterbox (native/src/cuda),
  * libdefectrt_plugins.so: the DrtGridSample plugin sources (plugins/gridsample), the CUDA kernels built by nvcc,
  * matrix_check: an executable linking the backend, which it then runs (error paths before the GPU; loads the plugins),
  * check_tensorrt_backend (native/tools, the device check of the backend): linked against the stub, and run on
    the fakes below (CPU letterbox + infer vs the GPU path, with and without a CUDA graph),
  * fake_check: the backend linked with a fake TensorRT + CUDA runtime in host memory (fake_trt.cpp, its TensorRT
    side generated from that version's NvInferImpl.h by gen_fakes.py), which it then runs: loading, dynamic / fixed
    batch, float16 input, the GPU letterbox path, CUDA graph capture and replay, errors (the backend's logic on each
    version's API; not a test of real TensorRT),
all linked with -Wl,--no-undefined against the stub and the real libcudart (the fake runs: against the fakes). It
prints one line per version and exits 1 if any version fails. Without ../shared, a C++ compiler or the CUDA toolkit it prints why and exits 0 (a user's clone).

  python3 native/trt_matrix/run_matrix.py [--jobs 2] [--versions 8.0,11.1] [--prove-missing]

--prove-missing builds one version's stub without getPluginRegistry and succeeds only if linking the plugin library
then fails on that symbol (the proof that the link checks what the stub provides).
--sanitize builds and runs only the fake runs (fake_check, check_tensorrt_backend), with AddressSanitizer + UBSan
(leaks included) on the backend too.
Standard library only, Python 3.6+ (JetPack 4.6).
"""
from __future__ import print_function

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_fakes  # noqa: E402  (next to this script)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NATIVE_SRC = os.path.join(ROOT, "native", "src")
PLUGINS = os.path.join(ROOT, "plugins", "gridsample")
PLUGIN_SOURCES = ["gridsample_plugin_common.cpp", "gridsample_plugin_v2.cpp", "gridsample_plugin_v3.cpp",
                  "gridsample_plugin_register.cpp"]
# C++14 for nvcc: JetPack 4.6's CUDA 10.2 has no C++17. sm_87: Jetson Orin; sm_86: RTX 30 laptops. CUDA 13 dropped sm_53/62/72 (Nano, TX2, Xavier): those need their
# JetPack's own nvcc (CUDA 10.2 / 11.4), which is not on this machine.
CUDA_ARCHS = ["86", "87"]


def version_key(v):
    return tuple(int(p) for p in re.findall(r"\d+", v))


def header_version(include):
    """'8.6.1' from NvInferVersion.h (10.16 / 11.x define it through TRT_*_ENTERPRISE)."""
    text = open(os.path.join(include, "NvInferVersion.h")).read()
    parts = []
    for what in ("MAJOR", "MINOR", "PATCH"):
        m = (re.search(r"#define\s+TRT_%s_ENTERPRISE\s+(\d+)" % what, text)
             or re.search(r"#define\s+NV_TENSORRT_%s\s+(\d+)" % what, text))
        parts.append(m.group(1) if m else "?")
    return ".".join(parts)


class Step(object):
    def __init__(self, version, what, cmd):
        self.version, self.what, self.cmd = version, what, cmd
        self.rc, self.output, self.seconds = None, "", 0.0

    def run(self, env=None):
        t = time.time()
        proc = subprocess.run(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                              env=env)
        self.rc, self.output, self.seconds = proc.returncode, proc.stdout, time.time() - t
        return self


def first_errors(text, n=6):
    lines = [ln for ln in text.splitlines() if re.search(r"error|undefined|FAIL|cannot", ln, re.I)]
    return "\n".join((lines or text.splitlines())[:n])


class Matrix(object):
    def __init__(self, args):
        self.args = args
        self.cxx = args.cxx
        self.cuda = args.cuda
        self.nvcc = os.path.join(self.cuda, "bin", "nvcc")
        self.cuda_inc = os.path.join(self.cuda, "include")
        self.cuda_lib = os.path.join(self.cuda, "lib64")
        self.build = os.path.abspath(args.build)
        self.pool = ThreadPoolExecutor(max_workers=max(1, args.jobs))

    def out(self, *parts):
        path = os.path.join(self.build, *parts)
        d = os.path.dirname(path)
        if not os.path.isdir(d):
            os.makedirs(d)
        return path

    def parallel(self, steps, env=None):
        return list(self.pool.map(lambda s: s.run(env), steps))

    # ------------------------------------------------------------------------------------------------ compile steps
    SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g"]

    def cxx_obj(self, version, include, src, obj, std, strict, defines=()):
        cmd = [self.cxx, "-std=" + std, "-O0", "-fPIC", "-c", src, "-o", obj] + (
            self.SANITIZE if self.args.sanitize else []) + [ "-Wall", "-Wno-deprecated-declarations",
               "-I", NATIVE_SRC, "-I", PLUGINS, "-isystem", self.cuda_inc]
        if include:
            cmd += ["-isystem", include]
        if strict:
            cmd += ["-Wextra", "-Werror"]
        cmd += ["-D" + d for d in defines]
        return Step(version, "compile " + os.path.basename(src), cmd)

    def nvcc_obj(self, src, obj):
        cmd = [self.nvcc, "-std=c++14", "-O2", "-c", src, "-o", obj, "-DDEFECTRT_WITH_CUDA", "-Xcompiler", "-fPIC,-Wall",
               "-I", NATIVE_SRC, "-I", PLUGINS, "-ccbin", self.cxx]
        for a in CUDA_ARCHS:
            cmd += ["-gencode", "arch=compute_%s,code=sm_%s" % (a, a)]
        return Step("nvcc", "nvcc " + os.path.basename(src), cmd)

    def check_tool(self):
        """native/tools/check_letterbox_cuda.cu, the device check: built (not run: no GPU) so that it keeps compiling."""
        cmd = [self.nvcc, "-std=c++14", "-O2", "-DDEFECTRT_WITH_CUDA", "-I", NATIVE_SRC, "-ccbin", self.cxx,
               "-gencode", "arch=compute_87,code=sm_87", "-o", self.out("common", "check_letterbox_cuda"),
               os.path.join(ROOT, "native", "tools", "check_letterbox_cuda.cu"),
               os.path.join(NATIVE_SRC, "cuda", "letterbox_kernel.cu"),
               os.path.join(NATIVE_SRC, "cuda", "letterbox_host.cpp")]
        return Step("nvcc", "nvcc check_letterbox_cuda", cmd)

    def common_steps(self):
        return [
            self.check_tool(),
            self.nvcc_obj(os.path.join(NATIVE_SRC, "cuda", "letterbox_kernel.cu"), self.out("common", "lbk.o")),
            self.nvcc_obj(os.path.join(PLUGINS, "gridsample_kernel.cu"), self.out("common", "gsk.o")),
            self.cxx_obj("common", None, os.path.join(NATIVE_SRC, "cuda", "letterbox_host.cpp"),
                         self.out("common", "lbh.o"), "c++17", True),
            self.cxx_obj("common", None, os.path.join(HERE, "matrix_check.cpp"), self.out("common", "check.o"),
                         "c++17", True, ["DEFECTRT_WITH_TENSORRT"]),
            self.cxx_obj("common", None, os.path.join(HERE, "fake_check.cpp"), self.out("common", "fake_check.o"),
                         "c++17", True, ["DEFECTRT_WITH_TENSORRT", "DEFECTRT_WITH_CUDA"]),
            self.cxx_obj("common", None, os.path.join(ROOT, "native", "tools", "check_tensorrt_backend.cpp"),
                         self.out("common", "check_tensorrt_backend.o"), "c++17", True, ["DEFECTRT_WITH_TENSORRT"]),
        ]

    def version_compiles(self, v, include, stub_defines=()):
        gen = self.out(v, "fake_impl_gen.h")
        with io.open(gen, "w", encoding="utf-8") as f:
            f.write(gen_fakes.generate(include))
        fake = self.cxx_obj(v, include, os.path.join(HERE, "fake_trt.cpp"), self.out(v, "fake_trt.o"), "c++17", True,
                            ["DEFECTRT_WITH_TENSORRT", "DEFECTRT_WITH_CUDA"])
        fake.cmd += ["-I", os.path.dirname(gen), "-I", HERE]
        steps = [fake,
            self.cxx_obj(v, include, os.path.join(HERE, "stub_nvinfer.cpp"), self.out(v, "stub.o"), "c++17", True,
                         stub_defines),
            self.cxx_obj(v, include, os.path.join(NATIVE_SRC, "tensorrt", "tensorrt_backend.cpp"),
                         self.out(v, "backend.o"), "c++17", True, ["DEFECTRT_WITH_TENSORRT", "DEFECTRT_WITH_CUDA"]),
        ]
        for src in PLUGIN_SOURCES:  # the plugins' own build: C++14, -Wall, deprecations used on purpose
            steps.append(self.cxx_obj(v, include, os.path.join(PLUGINS, src), self.out(v, src + ".o"), "c++14", False))
        return steps

    # --------------------------------------------------------------------------------------------------- link steps
    def cuda_link(self):
        return ["-L", self.cuda_lib, "-lcudart", "-Wl,-rpath," + self.cuda_lib]

    def stub_link(self, v):
        major = v.split(".")[0]
        return Step(v, "link stub libnvinfer", [self.cxx, "-shared", "-o", self.out(v, "libnvinfer.so"),
                                                 self.out(v, "stub.o"), "-Wl,-soname,libnvinfer.so." + major])

    def plugin_link(self, v):
        objs = [self.out(v, s + ".o") for s in PLUGIN_SOURCES] + [self.out("common", "gsk.o")]
        return Step(v, "link libdefectrt_plugins.so",
                    [self.cxx, "-shared", "-o", self.out(v, "libdefectrt_plugins.so")] + objs +
                    ["-Wl,--no-undefined", "-L", self.out(v), "-lnvinfer", "-Wl,-rpath,$ORIGIN"] + self.cuda_link())

    def backend_link(self, v):
        objs = [self.out(v, "backend.o"), self.out("common", "lbh.o"), self.out("common", "lbk.o")]
        return Step(v, "link libdefectrt_trt.so",
                    [self.cxx, "-shared", "-o", self.out(v, "libdefectrt_trt.so")] + objs +
                    ["-Wl,--no-undefined", "-L", self.out(v), "-lnvinfer", "-Wl,-rpath,$ORIGIN", "-ldl", "-lpthread"]
                    + self.cuda_link())

    def fake_link(self, v):
        objs = [self.out("common", "fake_check.o"), self.out(v, "fake_trt.o"), self.out(v, "backend.o"),
                self.out("common", "lbh.o")]
        return Step(v, "link fake_check", [self.cxx, "-o", self.out(v, "fake_check")] + objs + ["-ldl", "-lpthread"] +
                    (self.SANITIZE if self.args.sanitize else []))

    def fake_tool_link(self, v):
        """check_tensorrt_backend on the fake runtime: the device check's own logic runs here."""
        objs = [self.out("common", "check_tensorrt_backend.o"), self.out(v, "fake_trt.o"), self.out(v, "backend.o"),
                self.out("common", "lbh.o")]
        return Step(v, "link fake check_tensorrt_backend", [self.cxx, "-o", self.out(v, "fake_check_tensorrt_backend")]
                    + objs + ["-ldl", "-lpthread"] + (self.SANITIZE if self.args.sanitize else []))

    def run_fake(self, v):
        return Step(v, "run fake_check", [self.out(v, "fake_check"), self.out(v)])

    def run_fake_tool(self, v):
        engine = self.out(v, "tool.engine")
        with io.open(engine, "w") as f:
            f.write(u"FAKEENGINE dynamic")
        return Step(v, "run check_tensorrt_backend on the fake runtime",
                    [self.out(v, "fake_check_tensorrt_backend"), engine, "8", "8"])

    def tool_link(self, v):
        """native/tools/check_tensorrt_backend (the device check of the backend): linked, not run (no GPU)."""
        return Step(v, "link check_tensorrt_backend",
                    [self.cxx, "-o", self.out(v, "check_tensorrt_backend"), self.out("common", "check_tensorrt_backend.o"),
                     "-L", self.out(v), "-ldefectrt_trt", "-lnvinfer", "-ldl", "-Wl,-rpath,$ORIGIN"] + self.cuda_link())

    def exe_link(self, v):
        return Step(v, "link matrix_check", [self.cxx, "-o", self.out(v, "matrix_check"), self.out("common", "check.o"),
                                             "-L", self.out(v), "-ldefectrt_trt", "-lnvinfer", "-ldl",
                                             "-Wl,-rpath,$ORIGIN"] + self.cuda_link())

    def run_check(self, v):
        expected = "3" if int(v.split(".")[0]) >= 10 else "1"
        return Step(v, "run matrix_check", [self.out(v, "matrix_check"), self.out(v), self.out(v, "libdefectrt_plugins.so"),
                                            expected])


def find_setup(args):
    """-> (versions {name: include}, None) or (None, reason to skip)."""
    if not os.path.exists(os.path.join(NATIVE_SRC, "letterbox_math.h")):
        return None, "native/src/letterbox_math.h is absent (it comes with the native core, issue 17)"
    trt_root = os.path.join(args.shared, "third_party", "tensorrt")
    if not os.path.isdir(trt_root):
        return None, "{} not found (the TensorRT header sets live in ../shared, absent in a user's clone)".format(
            trt_root)
    if not shutil.which(args.cxx):
        return None, "no C++ compiler '{}' on PATH".format(args.cxx)
    if not os.path.exists(os.path.join(args.cuda, "include", "cuda_runtime_api.h")):
        return None, "no CUDA toolkit at {} (TensorRT's headers include cuda_runtime_api.h; set CUDA_HOME)".format(
            args.cuda)
    if not os.path.exists(os.path.join(args.cuda, "bin", "nvcc")):
        return None, "no nvcc in {}/bin: the CUDA kernels cannot be compiled".format(args.cuda)
    versions = {}
    for name in sorted(os.listdir(trt_root), key=version_key):
        inc = os.path.join(trt_root, name, "include")
        if os.path.exists(os.path.join(inc, "NvInferVersion.h")):
            versions[name] = inc
    if args.versions:
        wanted = args.versions.split(",")
        missing = [v for v in wanted if v not in versions]
        if missing:
            raise SystemExit("trt-matrix: no header set for {} in {} (have {})".format(
                ", ".join(missing), trt_root, ", ".join(versions)))
        versions = {v: versions[v] for v in wanted}
    if not versions:
        return None, "no <version>/include/NvInferVersion.h under " + trt_root
    return versions, None


def prove_missing(m, versions):
    v = sorted(versions, key=version_key)[-1]
    steps = m.parallel([m.nvcc_obj(os.path.join(PLUGINS, "gridsample_kernel.cu"), m.out("common", "gsk.o"))]
                       + m.version_compiles(v, versions[v], ["DRT_STUB_OMIT_getPluginRegistry"]))
    bad = [s for s in steps if s.rc != 0 and "backend" not in s.what]
    if bad:
        print("trt-matrix --prove-missing: compile failed:\n" + first_errors(bad[0].output))
        return 1
    m.stub_link(v).run()
    link = m.plugin_link(v).run()
    if link.rc != 0 and "getPluginRegistry" in link.output:
        print("trt-matrix --prove-missing {}: ok, the plugin library does not link without getPluginRegistry:\n  {}"
              .format(v, first_errors(link.output, 2).replace("\n", "\n  ")))
        return 0
    print("trt-matrix --prove-missing {}: FAIL, the link did not fail on the missing symbol (rc {}):\n{}".format(
        v, link.rc, link.output[-2000:]))
    return 1


def sanitized_fakes(m, versions):
    compiles = [m.cxx_obj("common", None, os.path.join(NATIVE_SRC, "cuda", "letterbox_host.cpp"),
                          m.out("common", "lbh.o"), "c++17", True),
                m.cxx_obj("common", None, os.path.join(HERE, "fake_check.cpp"), m.out("common", "fake_check.o"),
                          "c++17", True, ["DEFECTRT_WITH_TENSORRT", "DEFECTRT_WITH_CUDA"]),
                m.cxx_obj("common", None, os.path.join(ROOT, "native", "tools", "check_tensorrt_backend.cpp"),
                          m.out("common", "check_tensorrt_backend.o"), "c++17", True, ["DEFECTRT_WITH_TENSORRT"])]
    for v, inc in versions.items():
        compiles += [s for s in m.version_compiles(v, inc) if "plugin" not in s.what and "stub" not in s.what]
    steps = m.parallel(compiles)
    steps += m.parallel([m.fake_link(v) for v in versions] + [m.fake_tool_link(v) for v in versions])
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0", UBSAN_OPTIONS="print_stacktrace=1")
    bad = [s for s in steps if s.rc != 0]
    if not bad:
        bad = [s for s in m.parallel([m.run_fake(v) for v in versions] + [m.run_fake_tool(v) for v in versions], env)
               if s.rc != 0]
    for v in sorted(versions, key=version_key):
        fail = [s for s in bad if s.version in (v, "common")]
        print("  {} {} fake_check under ASan + UBSan{}".format("FAIL" if fail else "ok  ", v, (
            ": " + fail[0].what + "\n" + fail[0].output[-3000:]) if fail else ""))
    return 1 if bad else 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", default=os.environ.get("DEFECTRT_SHARED", os.path.join(ROOT, "..", "shared")))
    ap.add_argument("--cuda", default=os.environ.get("CUDA_HOME", "/usr/local/cuda"))
    ap.add_argument("--cxx", default=os.environ.get("CXX", "g++"))
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "trt_matrix"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--versions", default="", help="comma-separated subset, e.g. 8.0,11.1")
    ap.add_argument("--prove-missing", action="store_true")
    ap.add_argument("--sanitize", action="store_true")
    args = ap.parse_args(argv)

    versions, reason = find_setup(args)
    if versions is None:
        print("trt-matrix: SKIPPED: " + reason)
        return 0
    m = Matrix(args)
    if args.prove_missing:
        return prove_missing(m, versions)
    if args.sanitize:
        return sanitized_fakes(m, versions)
    t0 = time.time()
    failed = {}  # version -> failing step

    def note(steps):
        for s in steps:
            if s.rc != 0 and s.version not in failed:
                failed[s.version] = s

    compiles = m.common_steps()
    for v, inc in versions.items():
        compiles += m.version_compiles(v, inc)
    note(m.parallel(compiles))
    if "common" in failed or "nvcc" in failed:
        s = failed.get("nvcc") or failed["common"]
        print("trt-matrix: FAIL ({}): {}\n{}".format(s.what, " ".join(s.cmd), first_errors(s.output)))
        return 1
    live = [v for v in versions if v not in failed]
    note(m.parallel([m.stub_link(v) for v in live]))
    live = [v for v in live if v not in failed]
    for v in live:  # the name the loader looks for (the stub's soname), as libnvinfer's packages install it
        link = m.out(v, "libnvinfer.so." + v.split(".")[0])
        if not os.path.lexists(link):
            os.symlink("libnvinfer.so", link)
    note(m.parallel([m.plugin_link(v) for v in live] + [m.backend_link(v) for v in live]))
    live = [v for v in live if v not in failed]
    note(m.parallel([m.exe_link(v) for v in live] + [m.fake_link(v) for v in live] + [m.tool_link(v) for v in live]
                    + [m.fake_tool_link(v) for v in live]))
    live = [v for v in live if v not in failed]
    env = dict(os.environ)
    env.pop("DRT_STUB_TRT_VERSION", None)
    runs = {s.version: s for s in m.parallel([m.run_check(v) for v in live], env)}
    note(runs.values())
    live = [v for v in live if v not in failed]
    fakes = {s.version: s for s in m.parallel([m.run_fake(v) for v in live], env)}
    note(fakes.values())
    live = [v for v in live if v not in failed]
    note(m.parallel([m.run_fake_tool(v) for v in live], env))

    print("trt-matrix: TensorRT backend + DrtGridSample plugins vs real headers, stub libnvinfer, libcudart of {}".format(
        args.cuda))
    print("  ok   nvcc: letterbox_kernel.cu, gridsample_kernel.cu (sm_{}), tools/check_letterbox_cuda.cu (built, "
          "not run: no GPU)".format(", sm_".join(CUDA_ARCHS)))
    for v in sorted(versions, key=version_key):
        api = "tensor API" if version_key(v) >= (8, 5) else "binding API"
        label = "{:<6} ({}, {})".format(v, header_version(versions[v]), api)
        if v in failed:
            s = failed[v]
            print("  FAIL {}: {}\n    {}\n    {}".format(label, s.what, " ".join(s.cmd)[:300],
                                                       first_errors(s.output).replace("\n", "\n    ")))
        else:
            checks = sum(1 for ln in runs[v].output.splitlines() if ln.startswith("ok"))
            fake = sum(1 for ln in fakes[v].output.splitlines() if ln.startswith("ok"))
            print("  ok   {}: compiled, linked (--no-undefined), {} run checks + {} fake-runtime checks passed, "
                  "device check tool ok on the fake runtime".format(label, checks, fake))
    print("trt-matrix: {} of {} versions ok in {:.0f} s ({} jobs)".format(
        len(versions) - len(failed), len(versions), time.time() - t0, args.jobs))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
