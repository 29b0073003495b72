// SPDX-License-Identifier: Apache-2.0
//
// DySample grid-sample math shared by the CUDA kernel and the host (CPU) reference.
//
// The op: ONNX GridSample / torch.nn.functional.grid_sample with mode=bilinear,
// padding_mode=border, align_corners=False, NCHW input, grid (N, Ho, Wo, 2) holding (x, y)
// normalised to [-1, 1] (x indexes W, y indexes H). Arithmetic is FP32 whatever the I/O type.
//
// Written from the definition of the op:
//   pixel  = ((g + 1) * size - 1) / 2          (align_corners=False: -1/+1 are the outer pixel edges)
//   border : pixel = clamp(pixel, 0, size - 1)  (samples outside the image repeat the edge pixels)
//   x0 = floor(x), x1 = x0 + 1, wx1 = x - x0, wx0 = 1 - wx1   (same for y)
//   out = wy0 * (wx0 * v(y0, x0) + wx1 * v(y0, x1)) + wy1 * (wx0 * v(y1, x0) + wx1 * v(y1, x1))
// After the clamp x0 is in [0, size-1]; x1 can be `size` only when wx1 == 0, so it is clamped to
// size - 1 to stay inside the tensor without changing the result.
//
// Plain C++ (no nvcc) sees DRT_HD as nothing, so gridsample_host.cpp compiles with g++ alone.
#ifndef DEFECTRT_GRIDSAMPLE_MATH_H
#define DEFECTRT_GRIDSAMPLE_MATH_H

#include <math.h>

#ifdef __CUDACC__
#define DRT_HD __host__ __device__
#else
#define DRT_HD
#endif

namespace drt {

// Normalised coordinate in [-1, 1] -> pixel coordinate (align_corners=False).
DRT_HD inline float gsUnnormalize(float g, int size)
{
    return ((g + 1.0f) * static_cast<float>(size) - 1.0f) * 0.5f;
}

// Border padding: clamp to [0, size - 1]. A NaN coordinate becomes 0 (never an out-of-range index).
DRT_HD inline float gsClipBorder(float x, int size)
{
    float const hi = static_cast<float>(size - 1);
    if (!(x > 0.0f)) // also catches NaN
    {
        return 0.0f;
    }
    return x < hi ? x : hi;
}

// Pixel coordinate of a grid value, border-clamped.
DRT_HD inline float gsSourceIndex(float g, int size)
{
    return gsClipBorder(gsUnnormalize(g, size), size);
}

// The two neighbours along one axis and their weights. `x` must already be in [0, size - 1].
struct GsAxis
{
    int i0;
    int i1;
    float w0;
    float w1;
};

DRT_HD inline GsAxis gsAxis(float x, int size)
{
    float const f = floorf(x);
    GsAxis a;
    a.i0 = static_cast<int>(f);
    if (a.i0 > size - 1) // cannot happen after the clamp; kept for safety
    {
        a.i0 = size - 1;
    }
    a.i1 = a.i0 + 1 < size ? a.i0 + 1 : size - 1;
    a.w1 = x - f;
    a.w0 = 1.0f - a.w1;
    return a;
}

// Bilinear blend of the four neighbour values.
DRT_HD inline float gsBilinear(float v00, float v01, float v10, float v11, GsAxis const& ax, GsAxis const& ay)
{
    return ay.w0 * (ax.w0 * v00 + ax.w1 * v01) + ay.w1 * (ax.w0 * v10 + ax.w1 * v11);
}

// One output value from one H x W input plane. `Load` turns an element into float
// (identity for float, __half2float for __half on the device).
template <typename T, typename Load>
DRT_HD inline float gsSamplePlane(T const* plane, int H, int W, float gx, float gy, Load load)
{
    GsAxis const ax = gsAxis(gsSourceIndex(gx, W), W);
    GsAxis const ay = gsAxis(gsSourceIndex(gy, H), H);
    T const* row0 = plane + static_cast<long long>(ay.i0) * W;
    T const* row1 = plane + static_cast<long long>(ay.i1) * W;
    return gsBilinear(load(row0[ax.i0]), load(row0[ax.i1]), load(row1[ax.i0]), load(row1[ax.i1]), ax, ay);
}

} // namespace drt

#endif // DEFECTRT_GRIDSAMPLE_MATH_H
