// SPDX-License-Identifier: Apache-2.0
//
// CUDA kernel of the DrtGridSample op. One thread per output element (n, c, ho, wo), grid-stride
// loop, templated on float / __half I/O with FP32 arithmetic (gridsample_math.h).
//
// UNVERIFIED ON HARDWARE: compiled with nvcc here (no GPU); its math is tested through the host
// build of gridsample_math.h against PyTorch.
#include "gridsample_kernel.h"
#include "gridsample_math.h"

#include <cuda_fp16.h>
#include <stdint.h>

namespace
{

struct LoadF32
{
    __device__ float operator()(float v) const { return v; }
};

struct LoadF16
{
    __device__ float operator()(__half v) const { return __half2float(v); }
};

template <typename T>
struct IO;

template <>
struct IO<float>
{
    typedef LoadF32 Load;
    static __device__ float load(float v) { return v; }
    static __device__ float store(float v) { return v; }
};

template <>
struct IO<__half>
{
    typedef LoadF16 Load;
    static __device__ float load(__half v) { return __half2float(v); }
    static __device__ __half store(float v) { return __float2half_rn(v); }
};

template <typename T>
__global__ void drtGridSampleKernel(T const* __restrict__ input, T const* __restrict__ grid, T* __restrict__ output,
    int C, int H, int W, int Ho, int Wo, int64_t total)
{
    int64_t const stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
    int64_t const outPlane = static_cast<int64_t>(Ho) * Wo;
    int64_t const inPlane = static_cast<int64_t>(H) * W;
    for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += stride)
    {
        int64_t const p = idx % outPlane;     // ho * Wo + wo
        int64_t const nc = idx / outPlane;    // n * C + c
        int64_t const n = nc / C;
        T const* g = grid + (n * outPlane + p) * 2;
        float const gx = IO<T>::load(g[0]);
        float const gy = IO<T>::load(g[1]);
        float const v = drt::gsSamplePlane(input + nc * inPlane, H, W, gx, gy, typename IO<T>::Load());
        output[idx] = IO<T>::store(v);
    }
}

template <typename T>
int launchTyped(void const* input, void const* grid, void* output, int N, int C, int H, int W, int Ho, int Wo,
    cudaStream_t stream)
{
    int64_t const total = static_cast<int64_t>(N) * C * Ho * Wo;
    int const block = 256;
    int64_t blocks = (total + block - 1) / block;
    int64_t const maxBlocks = 65535LL * 64; // the grid-stride loop covers the rest
    if (blocks > maxBlocks)
    {
        blocks = maxBlocks;
    }
    drtGridSampleKernel<T><<<static_cast<unsigned int>(blocks), block, 0, stream>>>(
        static_cast<T const*>(input), static_cast<T const*>(grid), static_cast<T*>(output), C, H, W, Ho, Wo, total);
    return static_cast<int>(cudaGetLastError());
}

} // namespace

int drtGridSampleLaunch(void const* input, void const* grid, void* output, int N, int C, int H, int W, int Ho,
    int Wo, int dtype, cudaStream_t stream)
{
    if (N < 0 || C < 0 || H < 0 || W < 0 || Ho < 0 || Wo < 0)
    {
        return -1;
    }
    if (N == 0 || C == 0 || Ho == 0 || Wo == 0)
    {
        return 0; // nothing to write
    }
    if (H == 0 || W == 0 || input == nullptr || grid == nullptr || output == nullptr)
    {
        return -1; // outputs to fill but nothing to sample from
    }
    switch (dtype)
    {
    case DRT_GRIDSAMPLE_FP32: return launchTyped<float>(input, grid, output, N, C, H, W, Ho, Wo, stream);
    case DRT_GRIDSAMPLE_FP16: return launchTyped<__half>(input, grid, output, N, C, H, W, Ho, Wo, stream);
    default: return -1;
    }
}
