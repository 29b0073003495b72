// Letterbox arithmetic shared by the CPU path and the CUDA kernel (compiled for host and device).
// Contract: identical to defectrt.runtime.preprocess.letterbox (cv2.resize INTER_LINEAR on uint8, pad value 114,
// same rounding of the new size and of the padding), bit-exact on uint8 values.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cmath>

#if defined(__CUDACC__)
#define DRT_HD __host__ __device__
#else
#define DRT_HD
#endif

namespace drt {
namespace lb {

struct Geometry {
  int src_w, src_h;      // input image
  int dst_w, dst_h;      // network input
  int new_w, new_h;      // resized image inside the network input
  int pad_left, pad_top; // where it starts
  float scale;           // new / src
};

// Pixel layout of the caller's image.
enum PixelFormat : int { BGR8 = 0, RGB8 = 1, BGRA8 = 2, RGBA8 = 3, GRAY8 = 4 };

// Same rounding as the Python runtime's letterbox.
DRT_HD Geometry geometry(int src_w, int src_h, int dst_w, int dst_h);

// The uint8 value of channel c (0 = R, 1 = G, 2 = B) at network-input pixel (x, y): the pad value outside the resized
// image, the INTER_LINEAR sample inside. `src` points to row 0; `stride` is bytes per row.
DRT_HD uint8_t sample(const uint8_t* src, size_t stride, PixelFormat format, const Geometry& g, int x, int y, int c);

// ---------------------------------------------------------------------------------------------------------------------
// Definitions. The Python runtime converts every input to a packed 3-channel BGR image and calls
// cv2.resize(INTER_LINEAR) on it, so the arithmetic below reproduces OpenCV's documented uint8 behaviour on a
// 3-channel image, whatever the caller's pixel format:
//  * source coordinate of a destination pixel: f = (d + 0.5) * (src / dst) - 0.5, as float; the integer part picks the
//    left/top neighbour, the fraction becomes two 11-bit fixed-point weights (round half to even of w * 2048);
//    columns left of 0 / right of the last one use the edge pixel with weights (2048, 0); rows are clamped to the edge;
//  * horizontal pass in integers (value * weight, no rounding); the vertical pass drops the low 4 bits of each
//    horizontal sum, multiplies by the row weight keeping the high 16 bits, and rounds the sum by 2 more bits (checked
//    bit-exact against cv2 on every element of hundreds of random sizes: see native/tests and tests/test_native.py);
//  * an exact 2x downscale on both axes is OpenCV's fast area average: (a + b + c + d + 2) >> 2;
//  * equal sizes copy the pixels (the Python runtime skips the resize then).
// ---------------------------------------------------------------------------------------------------------------------

constexpr int kPadValue = 114;
constexpr int kCoefBits = 11;                 // OpenCV's INTER_RESIZE_COEF_BITS for uint8
constexpr int kCoefScale = 1 << kCoefBits;    // 2048

DRT_HD inline Geometry geometry(int src_w, int src_h, int dst_w, int dst_h) {
  Geometry g;
  g.src_w = src_w;
  g.src_h = src_h;
  g.dst_w = dst_w;
  g.dst_h = dst_h;
  // Python: r = min(h / h0, w / w0) in double; new = round(w0 * r) (round half to even: rint in the default mode).
  const double rh = static_cast<double>(dst_h) / static_cast<double>(src_h);
  const double rw = static_cast<double>(dst_w) / static_cast<double>(src_w);
  const double r = rh < rw ? rh : rw;
  g.new_w = static_cast<int>(rint(static_cast<double>(src_w) * r));
  g.new_h = static_cast<int>(rint(static_cast<double>(src_h) * r));
  // Python: left = round((w - new_w) / 2 - 0.1): floor of the half for a non-negative difference.
  g.pad_left = (dst_w - g.new_w) / 2;
  g.pad_top = (dst_h - g.new_h) / 2;
  g.scale = static_cast<float>(r);
  return g;
}

namespace detail {

DRT_HD inline int channels(PixelFormat format) {
  return format == GRAY8 ? 1 : (format == BGRA8 || format == RGBA8) ? 4 : 3;
}

// Byte offset inside a source pixel of BGR channel `bc` (0 = B, 1 = G, 2 = R).
DRT_HD inline int channel_offset(PixelFormat format, int bc) {
  switch (format) {
    case RGB8:
    case RGBA8:
      return 2 - bc;
    case GRAY8:
      return 0;
    default:
      return bc;
  }
}

DRT_HD inline int pixel(const uint8_t* src, size_t stride, int cn, int off, int x, int y) {
  return src[static_cast<size_t>(y) * stride + static_cast<size_t>(x) * static_cast<size_t>(cn) + off];
}

// Round half to even of a float to int, as OpenCV's saturate_cast<short>(float) in the default rounding mode.
DRT_HD inline int round_even(float v) { return static_cast<int>(rintf(v)); }

// Source index and the two fixed-point weights of destination index d along one axis.
DRT_HD inline void axis(int d, int src_n, int dst_n, bool clamp_fraction, int* s, int* w0, int* w1) {
  const double inv_scale = static_cast<double>(dst_n) / static_cast<double>(src_n);
  const double scale = 1.0 / inv_scale;
  float f = static_cast<float>((d + 0.5) * scale - 0.5);
  int si = static_cast<int>(floorf(f));
  f -= static_cast<float>(si);
  if (clamp_fraction) {
    if (si < 0) {
      f = 0.f;
      si = 0;
    }
    if (si >= src_n - 1) {
      f = 0.f;
      si = src_n - 1;
    }
  }
  *s = si;
  *w0 = round_even((1.f - f) * static_cast<float>(kCoefScale));
  *w1 = round_even(f * static_cast<float>(kCoefScale));
}

DRT_HD inline int clamp_u8(int v) { return v < 0 ? 0 : (v > 255 ? 255 : v); }

}  // namespace detail

DRT_HD inline uint8_t sample(const uint8_t* src, size_t stride, PixelFormat format, const Geometry& g, int x, int y,
                             int c) {
  const int dx = x - g.pad_left;
  const int dy = y - g.pad_top;
  if (dx < 0 || dy < 0 || dx >= g.new_w || dy >= g.new_h) return static_cast<uint8_t>(kPadValue);
  const int bc = 2 - c;  // BGR channel index of RGB channel c
  const int cn = detail::channels(format);
  const int off = detail::channel_offset(format, bc);
  if (g.new_w == g.src_w && g.new_h == g.src_h) {
    return static_cast<uint8_t>(detail::pixel(src, stride, cn, off, dx, dy));
  }
  if (g.src_w == 2 * g.new_w && g.src_h == 2 * g.new_h) {
    const int sx = 2 * dx, sy = 2 * dy;
    const int sum = detail::pixel(src, stride, cn, off, sx, sy) + detail::pixel(src, stride, cn, off, sx + 1, sy) +
                    detail::pixel(src, stride, cn, off, sx, sy + 1) +
                    detail::pixel(src, stride, cn, off, sx + 1, sy + 1);
    return static_cast<uint8_t>((sum + 2) >> 2);
  }
  int sx, a0, a1, sy, b0, b1;
  detail::axis(dx, g.src_w, g.new_w, true, &sx, &a0, &a1);
  detail::axis(dy, g.src_h, g.new_h, false, &sy, &b0, &b1);
  const int sx1 = sx + 1 < g.src_w ? sx + 1 : g.src_w - 1;
  const int r0 = sy < 0 ? 0 : (sy > g.src_h - 1 ? g.src_h - 1 : sy);
  const int r1 = sy + 1 < 0 ? 0 : (sy + 1 > g.src_h - 1 ? g.src_h - 1 : sy + 1);
  const int h0 = detail::pixel(src, stride, cn, off, sx, r0) * a0 + detail::pixel(src, stride, cn, off, sx1, r0) * a1;
  const int h1 = detail::pixel(src, stride, cn, off, sx, r1) * a0 + detail::pixel(src, stride, cn, off, sx1, r1) * a1;
  // OpenCV's vertical pass: drop 4 bits of each horizontal sum, keep the high 16 bits of the product with the
  // weight, round the sum to 2 fewer bits (its SIMD arithmetic, which it applies to the whole row).
  const int v = ((((h0 >> 4) * b0) >> 16) + (((h1 >> 4) * b1) >> 16) + 2) >> 2;
  return static_cast<uint8_t>(detail::clamp_u8(v));
}

}  // namespace lb
}  // namespace drt
