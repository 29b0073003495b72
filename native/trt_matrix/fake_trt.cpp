// A fake TensorRT and a fake CUDA runtime, in host memory, for running the TensorRT backend's logic on a machine without
// a GPU (run_matrix.py builds it against every header set and links it, instead of libnvinfer and libcudart, into
// fake_check). The TensorRT side implements the internal interfaces (apiv::V*) behind the headers' inline IRuntime /
// ICudaEngine / IExecutionContext, through classes generated from each version's NvInferImpl.h (gen_fakes.py) so that
// any function the backend calls and this file does not implement aborts with its name. "Device" memory is host
// memory; a CUDA graph records the enqueues made during capture and replays them.
//
// The engine: input "images" (batch, 3, 8, 8), float32 (or float16 for a blob "FAKEENGINE half"), dynamic batch 1..4
// (or static 2 for "FAKEENGINE static2"); outputs "stats" (batch, 2) float32 = per image [sum, max] of its input, and
// "index" (batch, 1) int32 = 10 * b + 7. The last input an enqueue saw is kept for the test (fake_last_input).
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "cuda/letterbox_cuda.h"
#include "fake_impl_gen.h"
#include "fake_trt.h"
#include "tensorrt/trt_compat.h"

[[noreturn]] void drt_fake_unexpected(const char* function) {
  std::fprintf(stderr, "FAIL fake TensorRT: the backend called %s, which the fake does not implement\n", function);
  std::abort();
}

namespace {

FakeCounters g_counters;
std::vector<float> g_last_input;
bool g_capturing = false;
std::vector<std::function<void()>> g_captured;

float half_to_float(uint16_t h) {
  const int exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  const float v = exp == 0 ? std::ldexp(static_cast<float>(mant), -24)
                           : std::ldexp(static_cast<float>(mant | 0x400), exp - 25);  // no inf / nan in [0, 1]
  return (h & 0x8000) ? -v : v;
}

nvinfer1::Dims dims(std::initializer_list<int> v) {
  nvinfer1::Dims d{};
  d.nbDims = static_cast<int32_t>(v.size());
  int i = 0;
  for (int x : v) d.d[i++] = x;
  return d;
}

struct Model {
  bool half = false;
  int fixed_batch = 0;  // 0: dynamic 1..4
  int profiles = 1;     // "twoprofiles": the binding API then lists every tensor twice ("name [profile 1]")
};

const char* const kNames[3] = {"images", "stats", "index"};

class ContextImpl : public nvinfer1::apiv::gen::VExecutionContext {
 public:
  explicit ContextImpl(const Model& m) : m_(m), batch_(m.fixed_batch ? m.fixed_batch : -1) {}

  nvinfer1::Dims shape(int index) const {
    if (index == 0) return dims({batch_, 3, 8, 8});
    return index == 1 ? dims({batch_, 2}) : dims({batch_, 1});
  }
  bool set_shape(const nvinfer1::Dims& d) {
    const int lo = m_.fixed_batch ? m_.fixed_batch : 1, hi = m_.fixed_batch ? m_.fixed_batch : 4;
    if (d.nbDims != 4 || d.d[0] < lo || d.d[0] > hi || d.d[1] != 3 || d.d[2] != 8 || d.d[3] != 8) return false;
    batch_ = static_cast<int>(d.d[0]);
    return true;
  }
  void compute(void* const* addresses) {
    const size_t per = 3 * 8 * 8;
    g_last_input.assign(static_cast<size_t>(batch_) * per, 0.f);
    for (size_t i = 0; i < g_last_input.size(); ++i) {
      g_last_input[i] = m_.half ? half_to_float(static_cast<const uint16_t*>(addresses[0])[i])
                                : static_cast<const float*>(addresses[0])[i];
    }
    for (int b = 0; b < batch_; ++b) {
      float sum = 0.f, mx = -1e30f;
      for (size_t i = 0; i < per; ++i) {
        const float v = g_last_input[static_cast<size_t>(b) * per + i];
        sum += v;
        mx = v > mx ? v : mx;
      }
      static_cast<float*>(addresses[1])[2 * b] = sum;
      static_cast<float*>(addresses[1])[2 * b + 1] = mx;
      static_cast<int32_t*>(addresses[2])[b] = 10 * b + 7;
    }
  }
  bool enqueue(void* const* addresses) {
    if (batch_ < 0) return false;  // no shape set
    std::vector<void*> a(addresses, addresses + 3);
    for (void* p : a) {
      if (!p) return false;
    }
    ++g_counters.enqueues;
    if (g_capturing) {
      g_captured.push_back([this, a] { compute(a.data()); });
    } else {
      compute(a.data());
    }
    return true;
  }

#if DRT_TRT_TENSOR_API
  bool setInputShape(char const* name, nvinfer1::Dims const& d) noexcept override {
    return std::strcmp(name, kNames[0]) == 0 && set_shape(d);
  }
  nvinfer1::Dims getTensorShape(char const* name) const noexcept override {
    for (int i = 0; i < 3; ++i) {
      if (std::strcmp(name, kNames[i]) == 0) return shape(i);
    }
    return dims({});
  }
  bool setTensorAddress(char const* name, void* data) noexcept override {
    for (int i = 0; i < 3; ++i) {
      if (std::strcmp(name, kNames[i]) == 0) {
        addresses_[i] = data;
        return true;
      }
    }
    return false;
  }
  bool enqueueV3(cudaStream_t) noexcept override { return enqueue(addresses_); }
#endif
#if NV_TENSORRT_MAJOR < 10
  bool setBindingDimensions(int32_t index, nvinfer1::Dims d) noexcept override { return index == 0 && set_shape(d); }
  nvinfer1::Dims getBindingDimensions(int32_t index) const noexcept override { return shape(index); }
  bool enqueueV2(void* const* bindings, cudaStream_t, cudaEvent_t*) noexcept override { return enqueue(bindings); }
#endif
#if NV_TENSORRT_MAJOR >= 10
  nvinfer1::IExecutionContext* getPImpl() noexcept override { return nullptr; }
#endif

 private:
  Model m_;
  int batch_;
  void* addresses_[3] = {nullptr, nullptr, nullptr};
};

class FakeContext : public nvinfer1::IExecutionContext {
 public:
  explicit FakeContext(const Model& m) : impl_(m) { mImpl = &impl_; }

 private:
  ContextImpl impl_;
};

class EngineImpl : public nvinfer1::apiv::gen::VCudaEngine {
 public:
  explicit EngineImpl(const Model& m) : m_(m) {}

  nvinfer1::DataType type(int i) const {
    if (i == 0) return m_.half ? nvinfer1::DataType::kHALF : nvinfer1::DataType::kFLOAT;
    return i == 1 ? nvinfer1::DataType::kFLOAT : nvinfer1::DataType::kINT32;
  }
  nvinfer1::Dims shape(int i) const {
    const int b = m_.fixed_batch ? m_.fixed_batch : -1;
    if (i == 0) return dims({b, 3, 8, 8});
    return i == 1 ? dims({b, 2}) : dims({b, 1});
  }
  nvinfer1::Dims profile(int i, nvinfer1::OptProfileSelector s) const {
    if (i != 0) return dims({});
    const int b = m_.fixed_batch ? m_.fixed_batch : (s == nvinfer1::OptProfileSelector::kMIN ? 1 : s == nvinfer1::OptProfileSelector::kOPT ? 2 : 4);
    return dims({b, 3, 8, 8});
  }
  static int find(const char* name) {
    for (int i = 0; i < 3; ++i) {
      if (std::strcmp(name, kNames[i]) == 0) return i;
    }
    return -1;
  }

  int32_t getNbOptimizationProfiles() const noexcept override { return m_.profiles; }
#if DRT_TRT_TENSOR_API
  int32_t getNbIOTensors() const noexcept override { return 3; }
  char const* getIOTensorName(int32_t i) const noexcept override { return i >= 0 && i < 3 ? kNames[i] : nullptr; }
  nvinfer1::TensorIOMode getTensorIOMode(char const* name) const noexcept override {
    return find(name) == 0 ? nvinfer1::TensorIOMode::kINPUT : nvinfer1::TensorIOMode::kOUTPUT;
  }
  nvinfer1::DataType getTensorDataType(char const* name) const noexcept override { return type(find(name)); }
  nvinfer1::Dims getTensorShape(char const* name) const noexcept override { return shape(find(name)); }
  nvinfer1::Dims getProfileShape(char const* name, int32_t, nvinfer1::OptProfileSelector s) const noexcept override {
    return profile(find(name), s);
  }
#endif
#if NV_TENSORRT_MAJOR < 10
  int32_t getNbBindings() const noexcept override { return 3 * m_.profiles; }
  char const* getBindingName(int32_t i) const noexcept override {
    static const char* const kProfile1[3] = {"images [profile 1]", "stats [profile 1]", "index [profile 1]"};
    return i < 3 ? kNames[i] : kProfile1[i % 3];
  }
  bool bindingIsInput(int32_t i) const noexcept override { return i % 3 == 0; }
  nvinfer1::DataType getBindingDataType(int32_t i) const noexcept override { return type(i % 3); }
  nvinfer1::Dims getBindingDimensions(int32_t i) const noexcept override { return shape(i % 3); }
  nvinfer1::Dims getProfileDimensions(int32_t i, int32_t, nvinfer1::OptProfileSelector s) const noexcept override {
    return profile(i % 3, s);
  }
  bool hasImplicitBatchDimension() const noexcept override { return false; }
  nvinfer1::IExecutionContext* createExecutionContext() noexcept override { return new FakeContext(m_); }
#else
  nvinfer1::IExecutionContext* createExecutionContext(nvinfer1::ExecutionContextAllocationStrategy) noexcept override {
    return new FakeContext(m_);
  }
  nvinfer1::ICudaEngine* getPImpl() noexcept override { return nullptr; }
#endif

 private:
  Model m_;
};

class FakeEngine : public nvinfer1::ICudaEngine {
 public:
  explicit FakeEngine(const Model& m) : impl_(m) { mImpl = &impl_; }

 private:
  EngineImpl impl_;
};

class RuntimeImpl : public nvinfer1::apiv::gen::VRuntime {
 public:
  explicit RuntimeImpl(nvinfer1::ILogger* logger) : logger_(logger) {}
  nvinfer1::ICudaEngine* deserialize(void const* blob, std::size_t size) {
    const std::string text(static_cast<const char*>(blob), size);
    if (text.compare(0, 10, "FAKEENGINE") != 0) {
      logger_->log(nvinfer1::ILogger::Severity::kERROR, "fake: the plan file is not an engine of this version");
      return nullptr;
    }
    Model m;
    m.half = text.find("half") != std::string::npos;
    m.fixed_batch = text.find("static2") != std::string::npos ? 2 : 0;
    m.profiles = text.find("twoprofiles") != std::string::npos ? 2 : 1;
    return new FakeEngine(m);
  }
#if NV_TENSORRT_MAJOR < 10
  nvinfer1::ICudaEngine* deserializeCudaEngine(void const* blob, std::size_t size,
                                               nvinfer1::IPluginFactory*) noexcept override {
    return deserialize(blob, size);
  }
#else
  nvinfer1::ICudaEngine* deserializeCudaEngine(void const* blob, std::size_t size) noexcept override {
    return deserialize(blob, size);
  }
  nvinfer1::IRuntime* getPImpl() noexcept override { return nullptr; }
#endif

 private:
  nvinfer1::ILogger* logger_;
};

class FakeRuntime : public nvinfer1::IRuntime {
 public:
  explicit FakeRuntime(nvinfer1::ILogger* logger) : impl_(logger) { mImpl = &impl_; }

 private:
  RuntimeImpl impl_;
};

}  // namespace

FakeCounters& fake_counters() { return g_counters; }
const std::vector<float>& fake_last_input() { return g_last_input; }

// ------------------------------------------------------------------------------------------ libnvinfer entry points
extern "C" {
TENSORRTAPI void* createInferRuntime_INTERNAL(void* logger, int32_t) noexcept {
  return static_cast<nvinfer1::IRuntime*>(new FakeRuntime(static_cast<nvinfer1::ILogger*>(logger)));
}
TENSORRTAPI int32_t getInferLibVersion() noexcept { return NV_TENSORRT_VERSION; }
}

// -------------------------------------------------------------------------------------- the CUDA runtime, on the host
struct CUgraph_st {
  std::vector<std::function<void()>> ops;
};
struct CUgraphExec_st {
  std::vector<std::function<void()>> ops;
};
struct CUstream_st {};

extern "C" {
cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : cudaErrorInvalidDevice; }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int) {
  *stream = new CUstream_st();
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  delete stream;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaMalloc(void** p, size_t bytes) {
  *p = std::malloc(bytes);
  ++g_counters.device_allocations;
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFree(void* p) {
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMallocHost(void** p, size_t bytes) {
  *p = std::malloc(bytes);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFreeHost(void* p) {
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind, cudaStream_t) {
  std::memcpy(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                              cudaMemcpyKind, cudaStream_t) {
  if (width > dpitch || width > spitch) return cudaErrorInvalidPitchValue;
  for (size_t r = 0; r < height; ++r) {
    std::memcpy(static_cast<char*>(dst) + r * dpitch, static_cast<const char*>(src) + r * spitch, width);
  }
  ++g_counters.image_uploads;
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t) {
  std::memset(p, value, bytes);
  return cudaSuccess;
}
cudaError_t cudaGetLastError(void) { return cudaSuccess; }
const char* cudaGetErrorName(cudaError_t e) { return e == cudaSuccess ? "cudaSuccess" : "cudaError(fake)"; }
const char* cudaGetErrorString(cudaError_t) { return "fake CUDA runtime"; }
cudaError_t cudaStreamBeginCapture(cudaStream_t, cudaStreamCaptureMode) {
  g_capturing = true;
  g_captured.clear();
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t, cudaGraph_t* graph) {
  g_capturing = false;
  *graph = new CUgraph_st{g_captured};
  g_captured.clear();
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  *exec = new CUgraphExec_st{graph->ops};
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete exec;
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t) {
  ++g_counters.graph_launches;
  for (auto& op : exec->ops) op();
  return cudaSuccess;
}
}  // extern "C"

// The kernel launch, on the host: the twin's loop (the "device" pointers are host memory here).
namespace drt {
namespace cuda {
int letterbox_launch(const uint8_t* src, size_t stride, lb::PixelFormat format, int src_w, int src_h, void* dst,
                     OutType out_type, int dst_w, int dst_h, void*) {
  ++g_counters.kernel_launches;
  letterbox_host(src, stride, format, src_w, src_h, dst, out_type, dst_w, dst_h);
  return 0;
}
}  // namespace cuda
}  // namespace drt
