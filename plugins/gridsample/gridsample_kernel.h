// SPDX-License-Identifier: Apache-2.0
//
// CUDA launcher of the DrtGridSample op (bilinear, border padding, align_corners=False, NCHW).
// Used by both TensorRT plugin interfaces (gridsample_plugin_v2.cpp, gridsample_plugin_v3.cpp).
#ifndef DEFECTRT_GRIDSAMPLE_KERNEL_H
#define DEFECTRT_GRIDSAMPLE_KERNEL_H

#include <cuda_runtime_api.h>

#define DRT_GRIDSAMPLE_FP32 0
#define DRT_GRIDSAMPLE_FP16 1

// input (N, C, H, W), grid (N, Ho, Wo, 2) normalised to [-1, 1], output (N, C, Ho, Wo); all three of
// the same dtype (0 = float32, 1 = float16), contiguous, on the device. FP32 arithmetic inside.
// Asynchronous on `stream`. Returns 0 (cudaSuccess) or a cudaError_t value; -1 for bad arguments.
// Zero-sized tensors are a no-op.
int drtGridSampleLaunch(void const* input, void const* grid, void* output, int N, int C, int H, int W, int Ho,
    int Wo, int dtype, cudaStream_t stream);

#endif // DEFECTRT_GRIDSAMPLE_KERNEL_H
