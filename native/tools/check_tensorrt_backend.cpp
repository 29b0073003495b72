// Device check of the TensorRT backend on a real engine: loads it (plugin libraries first), prints its I/O and batch
// range, then runs one synthetic image two ways - letterboxed on the CPU by the host twin + Backend::infer, and through
// ImageInput::infer_images (the CUDA kernel) - with and without a CUDA graph, and prints the largest difference of every
// output. The inputs of both paths are bit-identical by construction (same per-pixel function), so any difference
// points at the kernel, the upload or the backend. Exit status 0 when every output matches exactly.
//
// UNVERIFIED ON HARDWARE: built in CI against every TensorRT header set (trt-matrix), never run. On the device:
//   g++ -std=c++17 -O2 -DDEFECTRT_WITH_TENSORRT -DDEFECTRT_WITH_CUDA -I native/src -I/usr/local/cuda/include
//       native/tools/check_tensorrt_backend.cpp native/src/tensorrt/tensorrt_backend.cpp
//       native/src/cuda/letterbox_host.cpp build/letterbox_kernel.o
//       -L/usr/local/cuda/lib64 -lnvinfer -lcudart -ldl -lpthread -o check_tensorrt_backend     (one command)
//   (letterbox_kernel.o: nvcc -std=c++14 -O2 -arch=native -DDEFECTRT_WITH_CUDA -I native/src -c
//    native/src/cuda/letterbox_kernel.cu -o build/letterbox_kernel.o)
//   ./check_tensorrt_backend model.engine 640 640 [plugin.so ...]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend.h"
#include "cuda/letterbox_cuda.h"
#include "image_input.h"
#include "status.h"

namespace {

double as_double(const drt::HostTensor& t, size_t i) {
  switch (t.dtype) {
    case drt::DType::Float32: {
      float v;
      std::memcpy(&v, t.data.data() + i * 4, 4);
      return v;
    }
    case drt::DType::Int32: {
      int32_t v;
      std::memcpy(&v, t.data.data() + i * 4, 4);
      return v;
    }
    case drt::DType::Int64: {
      int64_t v;
      std::memcpy(&v, t.data.data() + i * 8, 8);
      return static_cast<double>(v);
    }
    default:
      return t.data[i];
  }
}

size_t element_bytes(drt::DType d) {
  return d == drt::DType::Int64 ? 8 : (d == drt::DType::Float32 || d == drt::DType::Int32) ? 4
                                      : d == drt::DType::Float16 ? 2 : 1;
}

// Largest |a - b| over all outputs; -1 when shapes differ.
double compare(const std::vector<drt::HostTensor>& a, const std::vector<drt::HostTensor>& b) {
  if (a.size() != b.size()) return -1;
  double worst = 0;
  for (size_t k = 0; k < a.size(); ++k) {
    if (a[k].shape != b[k].shape || a[k].dtype != b[k].dtype || a[k].data.size() != b[k].data.size()) return -1;
    const size_t n = a[k].data.size() / element_bytes(a[k].dtype);
    for (size_t i = 0; i < n; ++i) worst = std::max(worst, std::fabs(as_double(a[k], i) - as_double(b[k], i)));
    std::printf("  output %-12s shape [", a[k].name.c_str());
    for (int64_t d : a[k].shape) std::printf(" %lld", static_cast<long long>(d));
    std::printf(" ]\n");
  }
  return worst;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s ENGINE WIDTH HEIGHT [PLUGIN_LIBRARY ...]\n", argv[0]);
    return 2;
  }
  const int w = std::atoi(argv[2]), h = std::atoi(argv[3]);
  int failures = 0;
  try {
    for (int graph = 0; graph <= 1; ++graph) {
      drt::BackendOptions options;
      options.cuda_graph = graph == 1;
      for (int i = 4; i < argc; ++i) options.plugin_libraries.push_back(argv[i]);
      auto backend = drt::make_tensorrt_backend(argv[1], options);
      std::printf("engine %s: batch %d..%d, CUDA graph %s\n", argv[1], backend->min_batch(), backend->max_batch(),
                  graph ? "on" : "off");
      auto* gpu = dynamic_cast<drt::ImageInput*>(backend.get());
      if (!gpu) throw std::runtime_error("the TensorRT backend does not offer ImageInput");
      std::mt19937 rng(7);
      const int iw = 1280, ih = 720;  // a camera frame, letterboxed into the network input
      std::vector<uint8_t> image(static_cast<size_t>(iw) * ih * 3);
      for (auto& b : image) b = static_cast<uint8_t>(rng() & 0xff);
      const int batch = backend->min_batch();
      std::vector<float> blob(static_cast<size_t>(batch) * 3 * w * h, 0.f);  // images after the first stay zero
      drt::cuda::letterbox_host(image.data(), static_cast<size_t>(iw) * 3, drt::lb::BGR8, iw, ih, blob.data(),
                                drt::cuda::OutType::Float32, w, h);
      std::vector<drt::HostTensor> cpu_out, gpu_out;
      for (int round = 0; round < 3; ++round) {  // 3 rounds: plain, capture, replay when the graph is on
        backend->infer(blob.data(), {batch, 3, h, w}, cpu_out);
        drt::InputImage im;
        im.data = image.data(), im.width = iw, im.height = ih, im.stride = static_cast<size_t>(iw) * 3;
        std::vector<drt::lb::Geometry> geometry;
        gpu->infer_images(&im, 1, w, h, geometry, gpu_out);
        const double diff = compare(cpu_out, gpu_out);
        std::printf("round %d: max |CPU letterbox + infer - GPU letterbox| = %g%s\n", round, diff,
                    diff < 0 ? " (shapes differ)" : "");
        if (diff != 0) ++failures;
      }
    }
  } catch (const drt::Error& e) {
    std::printf("FAIL: status %d: %s\n", static_cast<int>(e.status()), e.what());
    return 1;
  } catch (const std::exception& e) {
    std::printf("FAIL: %s\n", e.what());
    return 1;
  }
  std::printf("%s\n", failures ? "FAIL: the two paths differ" : "ok: both paths give identical outputs");
  return failures ? 1 : 0;
}
