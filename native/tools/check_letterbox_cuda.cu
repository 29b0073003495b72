// Device check of the GPU letterbox: runs the CUDA kernel and its host twin on the same random images of many sizes,
// row strides and every pixel format, into float32 and float16, and prints the largest difference. Exit status 0 only when every output is bit-identical.
//
// UNVERIFIED ON HARDWARE: written and compiled (CI's trt-matrix builds it with nvcc) on a machine without a GPU; run it
// on one and report the output:
//   nvcc -std=c++14 -O2 -arch=native -DDEFECTRT_WITH_CUDA -I native/src native/tools/check_letterbox_cuda.cu \
//        native/src/cuda/letterbox_kernel.cu native/src/cuda/letterbox_host.cpp -o check_letterbox_cuda
//   ./check_letterbox_cuda            # e.g. on a Jetson: -arch=sm_87 (Orin), sm_72 (Xavier, JetPack 5's nvcc)
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <random>
#include <vector>

#include "cuda/letterbox_cuda.h"

namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "CUDA %s failed: %s\n", what, cudaGetErrorString(e));
    std::exit(2);
  }
}

float half_to_float(uint16_t h) {
  const int exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  const float v = exp == 0 ? std::ldexp(static_cast<float>(mant), -24)
                           : exp == 31 ? INFINITY : std::ldexp(static_cast<float>(mant | 0x400), exp - 25);
  return (h & 0x8000) ? -v : v;
}

}  // namespace

int main() {
  int devices = 0;
  check(cudaGetDeviceCount(&devices), "cudaGetDeviceCount");
  cudaDeviceProp prop;
  check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  std::printf("device 0: %s, compute capability %d.%d\n", prop.name, prop.major, prop.minor);
  cudaStream_t stream;
  check(cudaStreamCreate(&stream), "cudaStreamCreate");

  const int sizes[][2] = {{1, 1}, {3, 2}, {5, 7}, {31, 17}, {640, 33}, {640, 480}, {643, 481}, {640, 640},
                          {1280, 1280}, {1920, 1080}, {1283, 719}, {37, 999}, {1, 64}, {318, 322}};
  const int dsts[][2] = {{640, 640}, {320, 320}, {640, 384}, {53, 37}};
  std::mt19937 rng(17);
  int cases = 0, differing = 0;
  double max_diff = 0.0;
  for (const auto& s : sizes) {
    for (int format = 0; format <= 4; ++format) {
      const int cn = drt::cuda::bytes_per_pixel(static_cast<drt::lb::PixelFormat>(format));
      const size_t stride = static_cast<size_t>(s[0]) * cn + (cases % 3 == 1 ? 5 : 0);  // some padded rows
      std::vector<uint8_t> img(stride * static_cast<size_t>(s[1]));
      for (auto& b : img) b = static_cast<uint8_t>(rng() & 0xff);
      uint8_t* d_img = nullptr;
      check(cudaMalloc(&d_img, img.size()), "cudaMalloc image");
      check(cudaMemcpy(d_img, img.data(), img.size(), cudaMemcpyHostToDevice), "copy image");
      for (const auto& d : dsts) {
        for (int out = 0; out <= 1; ++out) {
          const auto type = static_cast<drt::cuda::OutType>(out);
          const size_t n = 3 * static_cast<size_t>(d[0]) * static_cast<size_t>(d[1]);
          const size_t bytes = n * (out ? 2 : 4);
          std::vector<unsigned char> want(bytes), got(bytes);
          drt::cuda::letterbox_host(img.data(), stride, static_cast<drt::lb::PixelFormat>(format), s[0], s[1],
                                    want.data(), type, d[0], d[1]);
          void* d_out = nullptr;
          check(cudaMalloc(&d_out, bytes), "cudaMalloc output");
          check(cudaMemset(d_out, 0xff, bytes), "cudaMemset");
          const int rc = drt::cuda::letterbox_launch(d_img, stride, static_cast<drt::lb::PixelFormat>(format), s[0],
                                                     s[1], d_out, type, d[0], d[1], stream);
          check(static_cast<cudaError_t>(rc), "letterbox_launch");
          check(cudaStreamSynchronize(stream), "kernel");
          check(cudaMemcpy(got.data(), d_out, bytes, cudaMemcpyDeviceToHost), "copy output");
          cudaFree(d_out);
          double diff = 0.0;
          for (size_t i = 0; i < n; ++i) {
            float a, b;
            if (out) {
              uint16_t ha, hb;
              std::memcpy(&ha, &got[i * 2], 2);
              std::memcpy(&hb, &want[i * 2], 2);
              a = half_to_float(ha);
              b = half_to_float(hb);
            } else {
              std::memcpy(&a, &got[i * 4], 4);
              std::memcpy(&b, &want[i * 4], 4);
            }
            diff = std::fmax(diff, std::fabs(static_cast<double>(a) - static_cast<double>(b)));
          }
          const bool same = std::memcmp(got.data(), want.data(), bytes) == 0;
          if (!same) {
            ++differing;
            std::printf("DIFF %dx%d format %d -> %dx%d %s: max |kernel - twin| = %g\n", s[0], s[1], format, d[0],
                        d[1], out ? "fp16" : "fp32", diff);
          }
          max_diff = std::fmax(max_diff, diff);
          ++cases;
        }
      }
      cudaFree(d_img);
    }
  }
  std::printf("%d cases, %d not bit-identical, max |kernel - host twin| = %g (1/255 = %g)\n", cases, differing,
              max_diff, 1.0 / 255.0);
  cudaStreamDestroy(stream);
  return differing == 0 ? 0 : 1;
}
