"""The GPU letterbox's host twin (native/src/cuda) against the Python runtime's CPU letterbox.

The CUDA kernel and the twin run the same per-pixel function (letterbox_body.h), so this is the CPU half of the
kernel's check; native/tools/check_letterbox_cuda.cu is the GPU half (unverified on hardware: no GPU here).
Tolerance: bit-exact (issue 17, item 5 allows "bit-exact or within 1/255"): the per-pixel arithmetic is drt::lb::sample
from the core's letterbox_math.h, which reproduces cv2.resize's uint8 INTER_LINEAR exactly, and x / 255 is the same
float32 division as the Python runtime's.
"""
import ctypes
import os
import shutil
import subprocess

import numpy as np
import pytest

from defectrt.runtime.preprocess import letterbox, preprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NATIVE = os.path.join(ROOT, "native")
SOURCES = [os.path.join(NATIVE, "src", "cuda", "letterbox_host.cpp"),
           os.path.join(NATIVE, "tests", "cuda", "letterbox_twin_capi.cpp")]
BGR8, RGB8, BGRA8, RGBA8, GRAY8 = range(5)


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    cxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler (g++ / c++) on PATH: the host twin cannot be built")
    if not os.path.exists(os.path.join(NATIVE, "src", "letterbox_math.h")):
        pytest.skip("native/src/letterbox_math.h is absent (it comes with the native core)")
    lib = str(tmp_path_factory.mktemp("lbtwin") / "liblbtwin.so")
    cmd = [cxx, "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-o", lib] + SOURCES
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert proc.returncode == 0, "building the host twin failed:\n" + proc.stdout
    dll = ctypes.CDLL(lib)
    dll.drt_test_letterbox_host.restype = ctypes.c_int
    dll.drt_test_letterbox_host.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                            ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                            ctypes.c_char_p, ctypes.c_size_t]
    dll.drt_test_float_to_half.restype = ctypes.c_uint16
    dll.drt_test_float_to_half.argtypes = [ctypes.c_float]
    return dll


def run_twin(dll, img, fmt, dst_hw, half=False, stride=None):
    h, w = img.shape[:2]
    dst = np.full((3, dst_hw[0], dst_hw[1]), 7, np.float16 if half else np.float32)
    err = ctypes.create_string_buffer(512)
    rc = dll.drt_test_letterbox_host(img.ctypes.data, img.strides[0] if stride is None else stride, fmt, w, h,
                                     dst.ctypes.data, 1 if half else 0, dst_hw[1], dst_hw[0], err, len(err))
    if rc != 0:
        raise ValueError(err.value.decode())
    return dst


def as_format(bgr, fmt, rng):
    """The same picture in the caller's pixel layout, and what the Python runtime is given for it."""
    if fmt == BGR8:
        return bgr, bgr
    if fmt == RGB8:
        return np.ascontiguousarray(bgr[:, :, ::-1]), bgr
    alpha = rng.integers(0, 256, bgr.shape[:2] + (1,), dtype=np.uint8)
    if fmt == BGRA8:
        img = np.concatenate([bgr, alpha], axis=2)
        return img, img
    if fmt == RGBA8:
        return np.concatenate([bgr[:, :, ::-1], alpha], axis=2), np.concatenate([bgr, alpha], axis=2)
    gray = np.ascontiguousarray(bgr[:, :, 0])
    return gray, gray


def padded_rows(img, extra):
    """The same image inside a wider buffer: the row stride is larger than width * channels."""
    h, w = img.shape[:2]
    big = np.zeros((h, w + extra) + img.shape[2:], np.uint8)
    big[:, :w] = img
    return big[:, :w]


# Odd, tiny, exact-2x, upscaling, equal-size and extreme aspect ratios; destination squares and rectangles.
SIZES = [(1, 1), (2, 3), (3, 2), (7, 5), (17, 31), (33, 640), (480, 640), (481, 643), (640, 640), (1280, 1280),
         (1080, 1920), (719, 1283), (320, 320), (999, 37), (64, 1), (1, 64), (322, 318)]
DSTS = [(640, 640), (320, 320), (384, 640), (37, 53)]


@pytest.mark.parametrize("fmt", [BGR8, RGB8, BGRA8, RGBA8, GRAY8], ids=["BGR8", "RGB8", "BGRA8", "RGBA8", "GRAY8"])
def test_host_twin_equals_python_preprocess(twin, fmt):
    rng = np.random.default_rng(17 + fmt)
    cases = 0
    for i, (h, w) in enumerate(SIZES):
        bgr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        img, py_img = as_format(bgr, fmt, rng)
        if i % 3 == 1:
            img = padded_rows(img, 5)
        for dst in DSTS[i % 2::2] if h * w > 100000 else DSTS:
            want, _ = preprocess(py_img, dst)
            got = run_twin(twin, img, fmt, dst)
            assert_bit_exact(got, want[0], "size {}x{} fmt {} -> {}".format(w, h, fmt, dst))
            cases += 1
    assert cases >= 40


def assert_bit_exact(got, want, what):
    """float32 x/255 blobs, bit for bit; on a difference, say how many uint8 values differ and where."""
    assert got.dtype == np.float32 and got.shape == want.shape, what
    # x / 255 in float32 is injective on 0..255, so multiplying back recovers the uint8 value exactly.
    u8_got, u8_want = np.rint(got.astype(np.float64) * 255), np.rint(want.astype(np.float64) * 255)
    assert np.array_equal(np.float32(u8_got) / np.float32(255), got), what + ": not exactly x / 255 in float32"
    if not np.array_equal(got, want):
        diff = np.abs(u8_got - u8_want)
        first = np.argwhere(diff > 0)[0]
        raise AssertionError("{}: {} of {} uint8 values differ, max {} step(s), first at {} ({} vs {})".format(
            what, int((diff > 0).sum()), diff.size, diff.max(), first.tolist(), u8_got[tuple(first)],
            u8_want[tuple(first)]))


def test_host_twin_uint8_matches_letterbox_before_scaling(twin):
    rng = np.random.default_rng(5)
    bgr = rng.integers(0, 256, (361, 517, 3), dtype=np.uint8)
    boxed, info = letterbox(bgr, (640, 640))
    got = run_twin(twin, bgr, BGR8, (640, 640))
    want = boxed[:, :, ::-1].transpose(2, 0, 1).astype(np.float32) / np.float32(255)  # RGB, CHW
    assert_bit_exact(got, want, "361x517 -> 640")
    left, top = info.pad
    assert left == 0 and top > 0  # wider than high: bands above and below
    pad = np.float32(114) / np.float32(255)
    assert (got[:, :top] == pad).all() and (got[:, top + info.unpad_shape[0]:] == pad).all()
    assert (got[:, top:top + info.unpad_shape[0]] != pad).mean() > 0.9


def test_host_twin_float16_bit_exact(twin):
    rng = np.random.default_rng(9)
    for h, w in [(480, 640), (31, 17), (640, 640)]:
        bgr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        got32 = run_twin(twin, bgr, BGR8, (320, 320))
        got = run_twin(twin, bgr, BGR8, (320, 320), half=True)
        # the half output is the float32 output rounded to nearest even, bit for bit
        np.testing.assert_array_equal(got.view(np.uint16), got32.astype(np.float16).view(np.uint16))
        assert_bit_exact(got32, preprocess(bgr, (320, 320))[0][0], "fp16 case {}x{}".format(w, h))


def test_float_to_half_rounds_like_numpy(twin):
    rng = np.random.default_rng(3)
    values = np.concatenate([np.arange(256, dtype=np.float32) / np.float32(255),
                             rng.standard_normal(2000).astype(np.float32) * np.float32(1000),
                             np.array([0.0, -0.0, 1e-8, -6e-8, 6.1e-5, 65504, 65520, 1e6, np.inf, -np.inf],
                                      np.float32),
                             (rng.standard_normal(500) * 1e-5).astype(np.float32)])
    got = np.array([twin.drt_test_float_to_half(float(v)) for v in values], np.uint16)
    with np.errstate(over="ignore"):
        want = values.astype(np.float16)
    np.testing.assert_array_equal(got, want.view(np.uint16))
    assert twin.drt_test_float_to_half(float("nan")) & 0x7c00 == 0x7c00


@pytest.mark.parametrize("bad, needle", [
    (dict(fmt=9), "pixel format 9"),
    (dict(stride=10), "row stride 10"),
    (dict(dst=(0, 640)), "network input size"),
    (dict(dst=(64, 40000)), "network input size"),
    (dict(img=(1, 3000)), "would be resized to 640x0"),
])
def test_host_twin_rejects_bad_arguments(twin, bad, needle):
    img = np.zeros(bad.get("img", (20, 30)) + (3,), np.uint8)
    with pytest.raises(ValueError, match=needle):
        run_twin(twin, img, bad.get("fmt", BGR8), bad.get("dst", (640, 640)), stride=bad.get("stride"))


def test_host_twin_under_address_and_ub_sanitizers(twin, tmp_path):
    """Exact-size heap blocks: a read past the image (its last row has no stride padding) or a write past the output
    fails under ASan; UBSan catches overflowing index arithmetic."""
    cxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
    exe = str(tmp_path / "lbfuzz")
    cmd = [cxx, "-std=c++17", "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-o", exe,
           os.path.join(NATIVE, "tests", "cuda", "letterbox_twin_fuzz.cpp"), SOURCES[0]]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    if proc.returncode != 0 and "asan" in proc.stdout.lower():
        pytest.skip("this compiler has no AddressSanitizer runtime: " + proc.stdout[-300:])
    assert proc.returncode == 0, proc.stdout
    run = subprocess.run([exe], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                         env=dict(os.environ, ASAN_OPTIONS="detect_leaks=1"))
    assert run.returncode == 0, run.stdout[-3000:]
    assert "ran" in run.stdout
