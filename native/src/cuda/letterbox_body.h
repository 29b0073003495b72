// The per-pixel body of the GPU pre-processing, shared word for word by the CUDA kernel (letterbox_kernel.cu) and its
// host twin (letterbox_host.cpp): letterbox resize + pad (drt::lb::sample) + BGR->RGB + x / 255 + HWC->NCHW, written as
// float32 or float16. Keeping the body in one DRT_HD function is what lets the host twin, tested on the CPU against the
// Python runtime, stand for the kernel.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../letterbox_math.h"

namespace drt {
namespace cuda {

enum class OutType : int { Float32 = 0, Float16 = 1 };

// Bytes per pixel of a caller's image.
DRT_HD inline int bytes_per_pixel(lb::PixelFormat format) {
  return format == lb::GRAY8 ? 1 : (format == lb::BGRA8 || format == lb::RGBA8) ? 4 : 3;
}

// IEEE binary16 bits of a float, round to nearest even (what __float2half_rn and numpy's astype(float16) do). Written
// out in integers so that host and device produce the same bits without cuda_fp16.h on the host side.
DRT_HD inline uint16_t float_to_half_bits(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof(x));
  const uint32_t sign = (x >> 16) & 0x8000u;
  const int exp = static_cast<int>((x >> 23) & 0xffu);
  uint32_t mant = x & 0x7fffffu;
  if (exp == 0xff) return static_cast<uint16_t>(sign | 0x7c00u | (mant ? 0x200u : 0u));  // inf, nan
  const int e = exp - 127 + 15;
  if (e >= 0x1f) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow -> inf
  if (e <= 0) {                                                  // subnormal half or zero
    if (e < -10) return static_cast<uint16_t>(sign);
    mant |= 0x800000u;
    const int shift = 14 - e;
    uint32_t h = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1u);
    const uint32_t halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (h & 1u))) ++h;
    return static_cast<uint16_t>(sign | h);
  }
  uint32_t h = (static_cast<uint32_t>(e) << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // a carry into the exponent rounds up correctly
  return static_cast<uint16_t>(sign | h);
}

// Writes the three channels of network-input pixel (x, y) into `dst`, one (3, dst_h, dst_w) plane set (NCHW, one image).
// The division is x / 255 in float32, as the Python runtime's np.divide(plane, np.float32(255)); nvcc compiles `/` as
// the IEEE division unless -use_fast_math / -prec-div=false are given, which the build never passes.
DRT_HD inline void letterbox_pixel(const uint8_t* src, size_t stride, lb::PixelFormat format, const lb::Geometry& g,
                                   int x, int y, OutType out_type, void* dst) {
  const size_t plane = static_cast<size_t>(g.dst_w) * static_cast<size_t>(g.dst_h);
  const size_t at = static_cast<size_t>(y) * static_cast<size_t>(g.dst_w) + static_cast<size_t>(x);
  for (int c = 0; c < 3; ++c) {
    const float v = static_cast<float>(lb::sample(src, stride, format, g, x, y, c)) / 255.0f;
    if (out_type == OutType::Float32) {
      static_cast<float*>(dst)[c * plane + at] = v;
    } else {
      static_cast<uint16_t*>(dst)[c * plane + at] = float_to_half_bits(v);
    }
  }
}

}  // namespace cuda
}  // namespace drt
