"""Reading image files and folders safely: regular files only, truncation detected, size bounded.

cv2.imread hands the problems of hostile files to the user silently: it opens a FIFO named `x.png` and
blocks forever; it decodes a JPEG cut off in transfer into an image whose lower part is grey (libjpeg
only prints a warning); it decodes whatever size a header claims. Here a file is opened only after
fstat shows a regular file (opened non-blocking, so a FIFO swapped in between cannot block either),
its bytes are read once and checked for the end marker of their format (PNG IEND, JPEG EOI), and
the pixel count in the header is bounded before decoding.

16-bit, gray and 4-channel files are decoded with IMREAD_COLOR, as cv2.imread does by default: 8-bit
BGR (16-bit values >> 8, gray replicated, alpha dropped); `preprocess.as_bgr` does the same for arrays.
"""
from __future__ import annotations

import os
import stat
import struct

from defectrt.fileio import is_temporary

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MAX_IMAGE_BYTES = 1 << 30
MAX_IMAGE_PIXELS = 1 << 28  # 268 M pixels (16384 x 16384): 805 MB as BGR uint8

TRUNCATED = "truncated: the file ends before the image does (cut off in transfer?)"
NOT_REGULAR = "not a regular file (a FIFO, socket or device); skipped without opening it"


class ImageProblem(Exception):
    """An image file that cannot be used; str() says why (for a 'skipping PATH: why' line), `kind` is
    the short category a summary counts: "not a regular file", "truncated", "too large", "unreadable"."""

    def __init__(self, kind, detail):
        Exception.__init__(self, detail)
        self.kind = kind


def is_regular(path):
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def list_images(folder):
    """-> (paths of regular image files in `folder`, sorted; [(path, ImageProblem)] of image names skipped)."""
    paths, skipped = [], []
    for name in sorted(os.listdir(folder)):
        if not name.lower().endswith(IMAGE_EXTS) or is_temporary(name):
            continue
        path = os.path.join(folder, name)
        if os.path.isdir(path):
            continue
        if is_regular(path):
            paths.append(path)
        else:
            skipped.append((path, ImageProblem("not a regular file", NOT_REGULAR)))
    return paths, skipped


def read_image(path):
    """-> BGR uint8 (H, W, 3); raises ImageProblem for a non-regular, huge, truncated or undecodable file."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise ImageProblem("unreadable", "cannot open it ({})".format(exc.strerror))
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ImageProblem("not a regular file", NOT_REGULAR)
        if st.st_size > MAX_IMAGE_BYTES:
            raise ImageProblem("too large", "{} bytes, more than the {} an image file may have".format(st.st_size, MAX_IMAGE_BYTES))
        data = f.read(st.st_size + 1)  # read(n) allocates n bytes up front: size it by the file
    size = header_size(data)
    if size is not None and size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise ImageProblem("too large", "its header claims {}x{} pixels, more than the {} supported; split or downscale "
                           "it".format(size[1], size[0], MAX_IMAGE_PIXELS))
    import cv2  # here, not at the top: the CLI imports IMAGE_EXTS while building its parser
    import numpy as np

    if is_truncated(data):  # before decoding: libjpeg would return a half-grey image with only a warning
        raise ImageProblem("truncated", TRUNCATED)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if img is None:
        raise ImageProblem("unreadable", "cannot read it as an image (corrupt or unsupported)")
    return img


def is_truncated(data):
    """True when PNG / JPEG bytes lack their format's end marker (other formats: False, trust the decoder)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return b"IEND" not in data[-64:]
    if data.startswith(b"\xff\xd8"):
        return data.rstrip(b"\0\r\n ")[-2:] != b"\xff\xd9"
    return False


def header_size(data):
    """(h, w) from a PNG IHDR or a JPEG SOF header, else None (cheap: no decoding)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24 and data[12:16] == b"IHDR":
        w, h = struct.unpack(">II", data[16:24])
        return h, w
    if not data.startswith(b"\xff\xd8"):
        return None
    i, n = 2, len(data)
    while i + 9 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return h, w
        if marker == 0xDA or length < 2:
            return None
        i += 2 + length
    return None
