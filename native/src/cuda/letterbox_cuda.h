// GPU pre-processing of one image into the model input: letterbox + BGR->RGB + x / 255 + HWC->NCHW, float32 or
// float16. The kernel (letterbox_kernel.cu) and its host twin (letterbox_host.cpp) run the same per-pixel body
// (letterbox_body.h). UNVERIFIED ON HARDWARE: the kernel compiles with nvcc in CI; only the host twin has been run.
#pragma once
#include <cstddef>
#include <cstdint>

#include "letterbox_body.h"

namespace drt {
namespace cuda {

// Checks the arguments shared by the kernel and its twin; throws drt::Error(InvalidArgument) naming the bad one.
// Returns the geometry of the letterbox.
lb::Geometry check_letterbox_args(const uint8_t* src, size_t stride, lb::PixelFormat format, int src_w, int src_h,
                                  const void* dst, int dst_w, int dst_h);

// Host twin: the kernel's loop on the CPU. `dst` holds 3 * dst_h * dst_w elements of `out_type`.
void letterbox_host(const uint8_t* src, size_t stride, lb::PixelFormat format, int src_w, int src_h, void* dst,
                    OutType out_type, int dst_w, int dst_h);

#if defined(DEFECTRT_WITH_CUDA)
// Kernel launch, asynchronous on `stream` (a cudaStream_t; void* keeps this header free of CUDA's). `src` and `dst` are
// device pointers. Returns the cudaError_t of the launch (0 = success).
int letterbox_launch(const uint8_t* src, size_t stride, lb::PixelFormat format, int src_w, int src_h, void* dst,
                     OutType out_type, int dst_w, int dst_h, void* stream);
#endif

}  // namespace cuda
}  // namespace drt
