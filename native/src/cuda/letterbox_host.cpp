// Host twin of the letterbox kernel and the argument checks both share.
#include "letterbox_cuda.h"

#include <string>

#include "../status.h"

namespace drt {
namespace cuda {

namespace {
// The largest side accepted: keeps every index of the kernel (int pixel coordinates, size_t offsets) far from
// overflow and rejects nonsense sizes before any allocation.
constexpr int kMaxSide = 1 << 15;

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
  require(dst_w > 0 && dst_h > 0 && dst_w <= kMaxSide && dst_h <= kMaxSide,
          "network input size " + std::to_string(dst_w) + "x" + std::to_string(dst_h) + " must be 1.." +
              std::to_string(kMaxSide) + " on each side");
  const int cn = format == lb::GRAY8 ? 1 : (format == lb::BGRA8 || format == lb::RGBA8) ? 4 : 3;
  // src_w * cn <= 2^17: no overflow in size_t on any platform.
  require(stride >= static_cast<size_t>(src_w) * static_cast<size_t>(cn),
          "row stride " + std::to_string(stride) + " is smaller than width * channels (" +
              std::to_string(static_cast<size_t>(src_w) * static_cast<size_t>(cn)) + ")");
  return lb::geometry(src_w, src_h, dst_w, dst_h);
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
