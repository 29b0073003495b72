#include "preprocess.h"

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

// Per destination column of the resized image: source columns and weights (the same as lb::detail::axis).
struct Column {
  int x0, x1, a0, a1;
};

inline int px(const uint8_t* row, int x, int cn, int off) { return row[static_cast<size_t>(x) * cn + off]; }

}  // namespace

void letterbox_to_planes(const ImageView& im, const lb::Geometry& g, float* out) {
  const int W = g.dst_w, H = g.dst_h;
  const size_t plane = static_cast<size_t>(W) * static_cast<size_t>(H);
  const float pad = static_cast<float>(lb::kPadValue) / 255.0f;
  const int cn = lb::detail::channels(im.format);
  int off[3];  // byte offset of R, G, B inside a source pixel
  for (int c = 0; c < 3; ++c) off[c] = lb::detail::channel_offset(im.format, 2 - c);
  float* planes[3] = {out, out + plane, out + 2 * plane};
  for (int c = 0; c < 3; ++c) {
    for (int y = 0; y < H; ++y) {
      float* row = planes[c] + static_cast<size_t>(y) * W;
      if (y < g.pad_top || y >= g.pad_top + g.new_h) {
        for (int x = 0; x < W; ++x) row[x] = pad;
      } else {
        for (int x = 0; x < g.pad_left; ++x) row[x] = pad;
        for (int x = g.pad_left + g.new_w; x < W; ++x) row[x] = pad;
      }
    }
  }
  const bool copy = g.new_w == g.src_w && g.new_h == g.src_h;
  const bool area2 = !copy && g.src_w == 2 * g.new_w && g.src_h == 2 * g.new_h;
  std::vector<Column> cols(static_cast<size_t>(g.new_w));
  if (!copy && !area2) {
    for (int dx = 0; dx < g.new_w; ++dx) {
      Column& col = cols[static_cast<size_t>(dx)];
      lb::detail::axis(dx, g.src_w, g.new_w, true, &col.x0, &col.a0, &col.a1);
      col.x1 = col.x0 + 1 < g.src_w ? col.x0 + 1 : g.src_w - 1;
    }
  }
  for (int dy = 0; dy < g.new_h; ++dy) {
    const size_t out_row = static_cast<size_t>(dy + g.pad_top) * W + g.pad_left;
    if (copy || area2) {
      const uint8_t* r0 = im.pixels + static_cast<size_t>(copy ? dy : 2 * dy) * im.stride;
      const uint8_t* r1 = copy ? r0 : r0 + im.stride;
      for (int c = 0; c < 3; ++c) {
        float* dst = planes[c] + out_row;
        const int o = off[c];
        if (copy) {
          for (int dx = 0; dx < g.new_w; ++dx) dst[dx] = static_cast<float>(px(r0, dx, cn, o)) / 255.0f;
        } else {
          for (int dx = 0; dx < g.new_w; ++dx) {
            const int s = px(r0, 2 * dx, cn, o) + px(r0, 2 * dx + 1, cn, o) + px(r1, 2 * dx, cn, o) +
                          px(r1, 2 * dx + 1, cn, o);
            dst[dx] = static_cast<float>((s + 2) >> 2) / 255.0f;
          }
        }
      }
      continue;
    }
    int sy, b0, b1;
    lb::detail::axis(dy, g.src_h, g.new_h, false, &sy, &b0, &b1);
    const int y0 = sy < 0 ? 0 : (sy > g.src_h - 1 ? g.src_h - 1 : sy);
    const int y1 = sy + 1 < 0 ? 0 : (sy + 1 > g.src_h - 1 ? g.src_h - 1 : sy + 1);
    const uint8_t* r0 = im.pixels + static_cast<size_t>(y0) * im.stride;
    const uint8_t* r1 = im.pixels + static_cast<size_t>(y1) * im.stride;
    for (int c = 0; c < 3; ++c) {
      float* dst = planes[c] + out_row;
      const int o = off[c];
      for (int dx = 0; dx < g.new_w; ++dx) {
        const Column& col = cols[static_cast<size_t>(dx)];
        const int h0 = px(r0, col.x0, cn, o) * col.a0 + px(r0, col.x1, cn, o) * col.a1;
        const int h1 = px(r1, col.x0, cn, o) * col.a0 + px(r1, col.x1, cn, o) * col.a1;
        int v = ((((h0 >> 4) * b0) >> 16) + (((h1 >> 4) * b1) >> 16) + 2) >> 2;
        v = v < 0 ? 0 : (v > 255 ? 255 : v);
        dst[dx] = static_cast<float>(v) / 255.0f;
      }
    }
  }
}

}  // namespace drt
