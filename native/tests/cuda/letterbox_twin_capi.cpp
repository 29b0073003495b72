// Test entry to the host twin of the letterbox kernel for tests/test_native_letterbox_cuda.py (ctypes): no exception
// crosses it; a failure returns 1 and the message in `err`.
#include <cstdio>
#include <exception>

#include "../../src/cuda/letterbox_cuda.h"

extern "C" int drt_test_letterbox_host(const uint8_t* src, size_t stride, int format, int src_w, int src_h, void* dst,
                                       int out_type, int dst_w, int dst_h, char* err, size_t err_size) {
  try {
    drt::cuda::letterbox_host(src, stride, static_cast<drt::lb::PixelFormat>(format), src_w, src_h, dst,
                              static_cast<drt::cuda::OutType>(out_type), dst_w, dst_h);
    return 0;
  } catch (const std::exception& e) {
    if (err && err_size) std::snprintf(err, err_size, "%s", e.what());
    return 1;
  }
}

extern "C" uint16_t drt_test_float_to_half(float f) { return drt::cuda::float_to_half_bits(f); }
