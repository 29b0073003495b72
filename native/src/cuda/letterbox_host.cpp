// Host twin of the letterbox kernel and the argument checks both share.
#include "letterbox_cuda.h"

#include <string>

#include "../status.h"

namespace drt {
namespace cuda {

namespace {
// The largest sides accepted: images as the core's make_image_view (2^20: line-scan cameras), network inputs up to
// 2^15 (keeps the kernel's grid within CUDA's 65535 blocks in y). Every index stays far from int / size_t overflow.
constexpr int kMaxSide = 1 << 20;
constexpr int kMaxDstSide = 1 << 15;

void require(bool ok, const std::string& what) {
  if (!ok) throw Error(Status::InvalidArgument, "letterbox: " + what);
}
}  // namespace

lb::Geometry check_letterbox_args(const uint8_t* src, size_t stride, lb::PixelFormat format, int src_w, int src_h,
                                  const void* dst, int dst_w, int dst_h) {
  require(src != nullptr, "image data is null");
  require(dst != nullptr, "destination is null");
  require(format >= lb::BGR8 && format <= lb::GRAY8, "pixel format " + std::to_string(static_cast<int>(format)) +
                                                         " is unknown (BGR8=0, RGB8=1, BGRA8=2, RGBA8=3, GRAY8=4)");
  require(src_w > 0 && src_h > 0 && src_w <= kMaxSide && src_h <= kMaxSide,
          "image size " + std::to_string(src_w) + "x" + std::to_string(src_h) + " must be 1.." +
              std::to_string(kMaxSide) + " on each side");
  require(dst_w > 0 && dst_h > 0 && dst_w <= kMaxDstSide && dst_h <= kMaxDstSide,
          "network input size " + std::to_string(dst_w) + "x" + std::to_string(dst_h) + " must be 1.." +
              std::to_string(kMaxDstSide) + " on each side");
  const int cn = bytes_per_pixel(format);
  // src_w * cn <= 2^22: no overflow in size_t on any platform.
  require(stride >= static_cast<size_t>(src_w) * static_cast<size_t>(cn),
          "row stride " + std::to_string(stride) + " is smaller than width * channels (" +
              std::to_string(static_cast<size_t>(src_w) * static_cast<size_t>(cn)) + ")");
  const lb::Geometry g = lb::geometry(src_w, src_h, dst_w, dst_h);
  // As the CPU path (and cv2.resize in the Python runtime): a side that rounds to 0 pixels cannot be letterboxed.
  require(g.new_w >= 1 && g.new_h >= 1, "image " + std::to_string(src_w) + "x" + std::to_string(src_h) +
                                            " would be resized to " + std::to_string(g.new_w) + "x" +
                                            std::to_string(g.new_h) + " pixels; crop it to a less extreme aspect ratio");
  return g;
}

void letterbox_host(const uint8_t* src, size_t stride, lb::PixelFormat format, int src_w, int src_h, void* dst,
                    OutType out_type, int dst_w, int dst_h) {
  const lb::Geometry g = check_letterbox_args(src, stride, format, src_w, src_h, dst, dst_w, dst_h);
  for (int y = 0; y < dst_h; ++y) {
    for (int x = 0; x < dst_w; ++x) letterbox_pixel(src, stride, format, g, x, y, out_type, dst);
  }
}

}  // namespace cuda
}  // namespace drt
