// SPDX-License-Identifier: Apache-2.0
//
// Host (CPU) implementation of the DrtGridSample op, built from the same gridsample_math.h as the
// CUDA kernel. It needs neither CUDA nor TensorRT: the tests compile it with g++ and compare it
// with torch.nn.functional.grid_sample, which checks the math the kernel runs.
#include "gridsample_math.h"

#include <stdint.h>

#if defined(_WIN32)
#define DRT_HOST_EXPORT extern "C" __declspec(dllexport)
#else
#define DRT_HOST_EXPORT extern "C" __attribute__((visibility("default")))
#endif

namespace
{
struct LoadF32
{
    float operator()(float v) const { return v; }
};
} // namespace

// in (N, C, H, W), grid (N, Ho, Wo, 2), out (N, C, Ho, Wo); all contiguous float32.
// Returns 0 on success, 1 for a null pointer, 2 for a non-positive size.
DRT_HOST_EXPORT int drt_gridsample_host_f32(
    float const* in, float const* grid, float* out, int N, int C, int H, int W, int Ho, int Wo)
{
    if (in == nullptr || grid == nullptr || out == nullptr)
    {
        return 1;
    }
    if (N <= 0 || C <= 0 || H <= 0 || W <= 0 || Ho <= 0 || Wo <= 0)
    {
        return 2;
    }
    int64_t const plane = static_cast<int64_t>(H) * W;
    int64_t const outPlane = static_cast<int64_t>(Ho) * Wo;
    for (int n = 0; n < N; ++n)
    {
        float const* g = grid + static_cast<int64_t>(n) * outPlane * 2;
        for (int c = 0; c < C; ++c)
        {
            float const* src = in + (static_cast<int64_t>(n) * C + c) * plane;
            float* dst = out + (static_cast<int64_t>(n) * C + c) * outPlane;
            for (int64_t p = 0; p < outPlane; ++p)
            {
                dst[p] = drt::gsSamplePlane(src, H, W, g[2 * p], g[2 * p + 1], LoadF32());
            }
        }
    }
    return 0;
}

// Lets the Python side check it loaded the library it expects.
DRT_HOST_EXPORT int drt_gridsample_host_abi_version()
{
    return 1;
}
