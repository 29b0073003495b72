// The letterbox kernel: one thread per network-input pixel, the body shared with the host twin (letterbox_body.h).
// UNVERIFIED ON HARDWARE: compiled with nvcc in CI (sm_86, sm_87); never run on a GPU here. native/tools/
// check_letterbox_cuda.cu compares it with the host twin on a machine that has one.
#include <cuda_runtime_api.h>

#include "letterbox_cuda.h"

namespace drt {
namespace cuda {

namespace {
__global__ void letterbox_kernel(const uint8_t* src, size_t stride, lb::PixelFormat format, lb::Geometry g,
                                 OutType out_type, void* dst) {
  const int x = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  const int y = static_cast<int>(blockIdx.y * blockDim.y + threadIdx.y);
  if (x >= g.dst_w || y >= g.dst_h) return;
  letterbox_pixel(src, stride, format, g, x, y, out_type, dst);
}
}  // namespace

int letterbox_launch(const uint8_t* src, size_t stride, lb::PixelFormat format, int src_w, int src_h, void* dst,
                     OutType out_type, int dst_w, int dst_h, void* stream) {
  const lb::Geometry g = check_letterbox_args(src, stride, format, src_w, src_h, dst, dst_w, dst_h);
  const dim3 block(32, 8);
  const dim3 grid(static_cast<unsigned>((dst_w + 31) / 32), static_cast<unsigned>((dst_h + 7) / 8));
  letterbox_kernel<<<grid, block, 0, static_cast<cudaStream_t>(stream)>>>(src, stride, format, g, out_type, dst);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace cuda
}  // namespace drt
