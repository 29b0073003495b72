// The host twin of the letterbox kernel under AddressSanitizer + UBSan (tests/test_native_letterbox_cuda.py builds and
// runs it): random sizes, strides, pixel formats and output types, each image and output in a heap block of exactly its
// size, so a read past the last row or a write past the last plane is reported. Exit status 0 when clean.
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>

#include "../../src/cuda/letterbox_cuda.h"
#include "../../src/status.h"

int main() {
  std::mt19937 rng(1234);
  auto uniform = [&rng](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  int ran = 0, refused = 0;
  for (int i = 0; i < 400; ++i) {
    const int w = uniform(1, i < 200 ? 48 : 700), h = uniform(1, i < 200 ? 48 : 700);
    const int dw = uniform(1, 96), dh = uniform(1, 96);
    const auto format = static_cast<drt::lb::PixelFormat>(uniform(0, 4));
    const int cn = drt::cuda::bytes_per_pixel(format);
    const size_t stride = static_cast<size_t>(w) * cn + static_cast<size_t>(uniform(0, 3));
    const auto out = static_cast<drt::cuda::OutType>(uniform(0, 1));
    // The last row holds only w * cn bytes: callers' crops end there, so reading its stride padding would be a bug.
    const size_t image_bytes = stride * static_cast<size_t>(h - 1) + static_cast<size_t>(w) * cn;
    std::unique_ptr<uint8_t[]> image(new uint8_t[image_bytes]);
    for (size_t k = 0; k < image_bytes; ++k) image[k] = static_cast<uint8_t>(rng());
    const size_t out_bytes = 3 * static_cast<size_t>(dw) * dh * (out == drt::cuda::OutType::Float32 ? 4 : 2);
    std::unique_ptr<unsigned char[]> dst(new unsigned char[out_bytes]);
    try {
      drt::cuda::letterbox_host(image.get(), stride, format, w, h, dst.get(), out, dw, dh);
      ++ran;
    } catch (const drt::Error& e) {
      ++refused;  // e.g. a side that would be resized to 0 pixels
      if (e.status() != drt::Status::InvalidArgument) {
        std::fprintf(stderr, "unexpected status %d: %s\n", static_cast<int>(e.status()), e.what());
        return 1;
      }
    }
  }
  std::printf("letterbox twin fuzz: %d ran, %d refused\n", ran, refused);
  return ran > 300 ? 0 : 1;
}
