// CPU pre-processing: the caller's pixels -> letterboxed float32 RGB [0, 1] planes (3, H, W), exactly as
// defectrt.runtime.preprocess.preprocess (same values bit for bit: see letterbox_math.h).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "letterbox_math.h"

namespace drt {

struct ImageView {
  const uint8_t* pixels = nullptr;
  int width = 0, height = 0;
  size_t stride = 0;  // bytes per row
  lb::PixelFormat format = lb::BGR8;
};

// Validates a caller's image buffer description (each side <= 2^20, sizes overflow-checked) and returns the view.
ImageView make_image_view(const uint8_t* pixels, int width, int height, int stride_bytes, lb::PixelFormat format);

// Checks width/height/stride (overflow-checked), computes the geometry (InvalidArgument when the image cannot be
// letterboxed into dst, e.g. a resized side of 0 pixels).
lb::Geometry letterbox_geometry(const ImageView& image, int dst_w, int dst_h);

// Writes 3 * dst_h * dst_w floats at `out` (planes R, G, B). Same values as lb::sample / 255.
void letterbox_to_planes(const ImageView& image, const lb::Geometry& g, float* out);

namespace detail {
// The same with the SIMD code of this CPU switched off (simd = false): the plain C++ path every platform has, so
// tests check both on the machine they run on.
void letterbox_to_planes(const ImageView& image, const lb::Geometry& g, float* out, bool simd);
}  // namespace detail

}  // namespace drt
