#include "preprocess.h"

#include <algorithm>
#include <string>

#include "status.h"
#include "util.h"

namespace drt {

namespace {
constexpr int kMaxImageSide = 1 << 20;
}  // namespace

ImageView make_image_view(const uint8_t* pixels, int width, int height, int stride_bytes, lb::PixelFormat format) {
  if (width <= 0 || height <= 0)
    throw Error(Status::InvalidArgument, "image size " + std::to_string(width) + " x " + std::to_string(height) +
                                             "; width and height must be >= 1");
  if (width > kMaxImageSide || height > kMaxImageSide)
    throw Error(Status::InvalidArgument, "image size " + std::to_string(width) + " x " + std::to_string(height) +
                                             "; each side must be at most " + std::to_string(kMaxImageSide));
  const size_t cn = static_cast<size_t>(lb::detail::channels(format));
  const size_t row = checked_mul(static_cast<size_t>(width), cn, "image row (width x channels)");
  if (stride_bytes < 0)
    throw Error(Status::InvalidArgument, "stride_bytes " + std::to_string(stride_bytes) +
                                             " is negative; bottom-up images must be flipped first");
  const size_t stride = stride_bytes == 0 ? row : static_cast<size_t>(stride_bytes);
  if (stride < row)
    throw Error(Status::InvalidArgument, "stride_bytes " + std::to_string(stride_bytes) + " is smaller than a row (" +
                                             std::to_string(width) + " pixels x " + std::to_string(cn) + " bytes = " +
                                             std::to_string(row) + "); bottom-up (negative stride) images must be "
                                             "flipped first");
  checked_add(checked_mul(stride, static_cast<size_t>(height - 1), "image (stride x height)"), row, "image bytes");
  ImageView v;
  v.pixels = pixels;
  v.width = width;
  v.height = height;
  v.stride = stride;
  v.format = format;
  return v;
}


lb::Geometry letterbox_geometry(const ImageView& image, int dst_w, int dst_h) {
  if (image.width <= 0 || image.height <= 0)
    throw Error(Status::InvalidArgument, "image size " + std::to_string(image.width) + " x " +
                                             std::to_string(image.height) + "; width and height must be >= 1");
  lb::Geometry g = lb::geometry(image.width, image.height, dst_w, dst_h);
  if (g.new_w < 1 || g.new_h < 1 || g.new_w > dst_w || g.new_h > dst_h)
    throw Error(Status::InvalidArgument, "image size " + std::to_string(image.width) + " x " +
                                             std::to_string(image.height) + " is too elongated for the model input " +
                                             std::to_string(dst_w) + " x " + std::to_string(dst_h) +
                                             " (a side would be resized to 0 pixels); crop it first");
  return g;
}

namespace {

// Per destination column of the resized image: byte offsets of the two source pixels and their weights (the same
// numbers as lb::detail::axis).
struct Column {
  size_t x0, x1;
  int a0, a1;
};

// v / 255.0f for every uint8 v: the same float32 division as the Python runtime's np.divide, done once.
struct Inv255 {
  float v[256];
  Inv255() {
    for (int i = 0; i < 256; ++i) v[i] = static_cast<float>(i) / 255.0f;
  }
};
const Inv255 kInv255;

// One resized row, all three channels (the columns hold byte offsets, so any pixel size works).
void bilinear_row(const uint8_t* r0, const uint8_t* r1, int b0, int b1, const Column* cols, int n, const int* off,
                  float* d0, float* d1, float* d2) {
  float* dst[3] = {d0, d1, d2};
  for (int dx = 0; dx < n; ++dx) {
    const Column& col = cols[dx];
    for (int c = 0; c < 3; ++c) {
      const int o = off[c];
      const int h0 = r0[col.x0 + o] * col.a0 + r0[col.x1 + o] * col.a1;
      const int h1 = r1[col.x0 + o] * col.a0 + r1[col.x1 + o] * col.a1;
      int v = ((((h0 >> 4) * b0) >> 16) + (((h1 >> 4) * b1) >> 16) + 2) >> 2;
      v = v < 0 ? 0 : (v > 255 ? 255 : v);
      dst[c][dx] = kInv255.v[v];
    }
  }
}

template <int CN>
void special_row(const uint8_t* r0, const uint8_t* r1, bool copy, int n, const int* off, float* d0, float* d1,
                 float* d2) {
  float* dst[3] = {d0, d1, d2};
  if (copy) {
    for (int dx = 0; dx < n; ++dx)
      for (int c = 0; c < 3; ++c) dst[c][dx] = kInv255.v[r0[static_cast<size_t>(dx) * CN + off[c]]];
    return;
  }
  for (int dx = 0; dx < n; ++dx) {
    const size_t a = static_cast<size_t>(2 * dx) * CN, b = a + CN;
    for (int c = 0; c < 3; ++c) {
      const int o = off[c];
      dst[c][dx] = kInv255.v[(r0[a + o] + r0[b + o] + r1[a + o] + r1[b + o] + 2) >> 2];
    }
  }
}

}  // namespace

void letterbox_to_planes(const ImageView& im, const lb::Geometry& g, float* out) {
  const int W = g.dst_w, H = g.dst_h;
  const size_t plane = static_cast<size_t>(W) * static_cast<size_t>(H);
  const float pad = kInv255.v[lb::kPadValue];
  const int cn = lb::detail::channels(im.format);
  int off[3];  // byte offset of R, G, B inside a source pixel
  for (int c = 0; c < 3; ++c) off[c] = lb::detail::channel_offset(im.format, 2 - c);
  float* planes[3] = {out, out + plane, out + 2 * plane};
  for (int c = 0; c < 3; ++c) {
    for (int y = 0; y < H; ++y) {
      float* row = planes[c] + static_cast<size_t>(y) * W;
      if (y < g.pad_top || y >= g.pad_top + g.new_h) {
        std::fill(row, row + W, pad);
      } else {
        std::fill(row, row + g.pad_left, pad);
        std::fill(row + g.pad_left + g.new_w, row + W, pad);
      }
    }
  }
  const bool copy = g.new_w == g.src_w && g.new_h == g.src_h;
  const bool area2 = !copy && g.src_w == 2 * g.new_w && g.src_h == 2 * g.new_h;
  std::vector<Column> cols;
  if (!copy && !area2) {
    cols.resize(static_cast<size_t>(g.new_w));
    for (int dx = 0; dx < g.new_w; ++dx) {
      int x0, a0, a1;
      lb::detail::axis(dx, g.src_w, g.new_w, true, &x0, &a0, &a1);
      const int x1 = x0 + 1 < g.src_w ? x0 + 1 : g.src_w - 1;
      cols[static_cast<size_t>(dx)] = Column{static_cast<size_t>(x0) * cn, static_cast<size_t>(x1) * cn, a0, a1};
    }
  }
  for (int dy = 0; dy < g.new_h; ++dy) {
    const size_t o = static_cast<size_t>(dy + g.pad_top) * W + g.pad_left;
    float* d0 = planes[0] + o;
    float* d1 = planes[1] + o;
    float* d2 = planes[2] + o;
    if (copy || area2) {
      const uint8_t* r0 = im.pixels + static_cast<size_t>(copy ? dy : 2 * dy) * im.stride;
      const uint8_t* r1 = copy ? r0 : r0 + im.stride;
      switch (cn) {
        case 1: special_row<1>(r0, r1, copy, g.new_w, off, d0, d1, d2); break;
        case 4: special_row<4>(r0, r1, copy, g.new_w, off, d0, d1, d2); break;
        default: special_row<3>(r0, r1, copy, g.new_w, off, d0, d1, d2); break;
      }
      continue;
    }
    int sy, b0, b1;
    lb::detail::axis(dy, g.src_h, g.new_h, false, &sy, &b0, &b1);
    const int y0 = sy < 0 ? 0 : (sy > g.src_h - 1 ? g.src_h - 1 : sy);
    const int y1 = sy + 1 < 0 ? 0 : (sy + 1 > g.src_h - 1 ? g.src_h - 1 : sy + 1);
    const uint8_t* r0 = im.pixels + static_cast<size_t>(y0) * im.stride;
    const uint8_t* r1 = im.pixels + static_cast<size_t>(y1) * im.stride;
    bilinear_row(r0, r1, b0, b1, cols.data(), g.new_w, off, d0, d1, d2);
  }
}

}  // namespace drt
