// TensorRT backend of libdefectrt: a serialised engine in, float32 NCHW (or the caller's images, through ImageInput and
// the GPU letterbox) in, host tensors out. One execution context, one CUDA stream, pinned host buffers, device buffers
// sized once for the largest batch of the engine's optimisation profile 0, optional CUDA graph of the enqueue.
//
// UNVERIFIED ON HARDWARE: this file compiles and links against the headers of every TensorRT in
// ../shared/third_party/tensorrt (8.0 ... 11.1, with a stub libnvinfer: native/trt_matrix) and its error paths before
// the GPU run in CI; no part of it has run on a GPU or with a real libnvinfer.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#if defined(_WIN32)
#include "../windows_api.h"
#else
#include <dlfcn.h>
#endif

#include "../backend.h"
#include "../cuda/letterbox_cuda.h"
#include "../image_input.h"
#include "../status.h"
#include "../util.h"
#include "trt_compat.h"

namespace drt {
namespace {

// An engine file larger than this is refused before it is read (the largest YOLO11x FP32 engines are ~250 MB).
constexpr std::uintmax_t kMaxEngineBytes = std::uintmax_t(4) << 30;
// A host image larger than this is refused before the staging buffer grows (32768 x 32768 x 4 = 4 GiB).
constexpr unsigned long long kMaxImageBytes = 1ull << 32;

const char* const kRebuildHint =
    "An engine only runs on the TensorRT version and the GPU (compute capability) it was built with: rebuild it on "
    "this device from the bundle's ONNX (bundle/build_engine.sh, or trtexec --onnx=model.onnx --saveEngine=model.engine "
    "with the precision flags in that script, or `defectrt export build` where TensorRT's Python is installed).";

[[noreturn]] void fail(Status status, const std::string& message) { throw Error(status, "TensorRT backend: " + message); }

size_t checked_mul(size_t a, size_t b, const std::string& what) {
  if (a != 0 && b > std::numeric_limits<size_t>::max() / a) fail(Status::InvalidArgument, what + ": size overflows");
  return a * b;
}

// Number of elements of a fully specified shape; throws on a negative (unresolved) extent or an overflow.
size_t volume(const nvinfer1::Dims& d, const std::string& what) {
  if (d.nbDims < 0 || d.nbDims > nvinfer1::Dims::MAX_DIMS) fail(Status::Internal, what + ": invalid rank");
  size_t n = 1;
  for (int i = 0; i < d.nbDims; ++i) {
    if (d.d[i] < 0) {
      fail(Status::UnsupportedFormat, what + " has a data-dependent dimension " + std::to_string(i) +
                                          "; the TensorRT backend needs output shapes that follow from the input");
    }
    n = checked_mul(n, static_cast<size_t>(d.d[i]), what);
  }
  return n;
}

std::string dims_str(const nvinfer1::Dims& d) {
  std::string s = "(";
  for (int i = 0; i < d.nbDims; ++i) s += (i ? ", " : "") + std::to_string(static_cast<long long>(d.d[i]));
  return s + ")";
}

void cuda_check(cudaError_t e, const std::string& what) {
  if (e == cudaSuccess) return;
  const Status status = e == cudaErrorMemoryAllocation ? Status::OutOfMemory : Status::RuntimeFailure;
  fail(status, "CUDA " + what + " failed: " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

// ------------------------------------------------------------------------------------------------- TensorRT logger
// One process-wide logger: TensorRT keeps the first logger it is given, so it must outlive every runtime and engine
// (it is never destroyed). Errors are kept so that a failed deserialisation can say why.
class Logger : public nvinfer1::ILogger {
 public:
  void log(Severity severity, const char* msg) noexcept override {
    if (severity > Severity::kWARNING || msg == nullptr) return;
    std::fprintf(stderr, "[defectrt][TensorRT] %s: %s\n", severity == Severity::kWARNING ? "warning" : "error", msg);
    if (severity == Severity::kWARNING) return;
    try {
      std::lock_guard<std::mutex> lock(mutex_);
      if (errors_.size() >= 8) errors_.erase(errors_.begin());
      errors_.emplace_back(msg);
    } catch (...) {
      // nothing may leave log(): an error message lost to a failed allocation is acceptable
    }
  }
  void clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    errors_.clear();
  }
  std::string errors() {
    std::lock_guard<std::mutex> lock(mutex_);
    std::string s;
    for (const std::string& e : errors_) s += "\n  TensorRT: " + e;
    return s;
  }

 private:
  std::mutex mutex_;
  std::vector<std::string> errors_;
};

Logger& logger() {
  static Logger* instance = new Logger();  // intentionally leaked, see above
  return *instance;
}

// Paths are UTF-8 (the C ABI's encoding). On Windows they go through the wide APIs: the narrow ones (LoadLibraryA,
// std::ifstream(const char*)) would read them in the ANSI code page and miss every non-ASCII path.
std::ifstream open_binary(const std::string& path, std::ios::openmode mode) {
#if defined(_WIN32)
  return std::ifstream(widen(path).c_str(), std::ios::binary | mode);
#else
  return std::ifstream(path, std::ios::binary | mode);
#endif
}

// ---------------------------------------------------------------------------------------------- shared libraries
void* open_library(const std::string& path, std::string* error) {
#if defined(_WIN32)
  HMODULE h = LoadLibraryW(widen(path).c_str());
  if (!h) {
    const unsigned long code = static_cast<unsigned long>(GetLastError());
    *error = "LoadLibrary error " + std::to_string(code) +
             (code == 126 ? " (the DLL or one of the DLLs it depends on was not found)" : "");
  }
  return reinterpret_cast<void*>(h);
#else
  void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (!h) {
    const char* e = dlerror();
    *error = e ? e : "dlopen failed";
  }
  return h;
#endif
}

void* find_symbol(void* library, const char* name) {
#if defined(_WIN32)
  return reinterpret_cast<void*>(GetProcAddress(reinterpret_cast<HMODULE>(library), name));
#else
  return dlsym(library, name);
#endif
}

// TensorRT's own plugins (EfficientNMS_TRT for `--nms trt` bundles, ...) live in libnvinfer_plugin. It is opened at run
// time rather than linked, so that engines without those plugins need no libnvinfer_plugin at all.
void init_builtin_plugins() {
  static std::once_flag once;
  std::call_once(once, [] {
#if defined(_WIN32)
    const std::string names[] = {"nvinfer_plugin_" + std::to_string(trt::kMajor) + ".dll", "nvinfer_plugin.dll"};
#else
    const std::string names[] = {"libnvinfer_plugin.so." + std::to_string(trt::kMajor), "libnvinfer_plugin.so"};
#endif
    for (const std::string& name : names) {
      std::string error;
      void* lib = open_library(name, &error);
      if (!lib) continue;
      using Init = bool (*)(void*, const char*);
      Init init = reinterpret_cast<Init>(find_symbol(lib, "initLibNvInferPlugins"));
      if (init && init(&logger(), "")) return;
    }
    std::fprintf(stderr,
                 "[defectrt][TensorRT] warning: libnvinfer_plugin not found; engines with TensorRT's plugins "
                 "(EfficientNMS_TRT of `--nms trt` bundles) will not deserialise\n");
  });
}

// Plugin libraries register their creators when loaded. They are never unloaded: TensorRT's global registry keeps
// pointers into them for the life of the process.
void load_plugin_libraries(const std::vector<std::string>& paths) {
  for (const std::string& path : paths) {
    std::ifstream probe = open_binary(path, std::ios::in);
    if (!probe) fail(Status::NotFound, "plugin library '" + path + "' does not exist or cannot be read");
    std::string error;
    if (!open_library(path, &error)) {
      fail(Status::BackendUnavailable,
           "plugin library '" + path + "' could not be loaded: " + error +
               " (was it built for this TensorRT " + trt::compiled_version() + " and CUDA? Are its dependencies, "
               "libnvinfer and libcudart, on the library path?)");
    }
  }
}

std::vector<char> read_engine(const std::string& path) {
  std::ifstream file = open_binary(path, std::ios::in | std::ios::ate);
  if (!file) fail(Status::NotFound, "engine file '" + path + "' does not exist or cannot be read");
  const std::streamoff size = file.tellg();
  if (size <= 0) fail(Status::InvalidArgument, "engine file '" + path + "' is empty");
  if (static_cast<std::uintmax_t>(size) > kMaxEngineBytes) {
    fail(Status::InvalidArgument, "engine file '" + path + "' is " + std::to_string(static_cast<long long>(size)) +
                                      " bytes, more than the 4 GiB an engine of a detector can reasonably be");
  }
  std::vector<char> data(static_cast<size_t>(size));
  file.seekg(0);
  if (!file.read(data.data(), size)) fail(Status::RuntimeFailure, "could not read engine file '" + path + "'");
  return data;
}

// ------------------------------------------------------------------------------------------------- RAII holders
template <typename T>
struct TrtDelete {
  void operator()(T* p) const { delete p; }  // TensorRT 8.0+: objects are deleted, destroy() is deprecated
};
template <typename T>
using TrtPtr = std::unique_ptr<T, TrtDelete<T>>;

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { reset(); }
  void allocate(size_t bytes, const std::string& what) {
    reset();
    if (bytes == 0) bytes = 1;  // a valid distinct address for an empty tensor
    cuda_check(cudaMalloc(&ptr_, bytes), "cudaMalloc of " + std::to_string(bytes) + " bytes for " + what);
    bytes_ = bytes;
  }
  void reset() {
    if (ptr_) cudaFree(ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
  }
  void* get() const { return ptr_; }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  ~PinnedBuffer() {
    if (ptr_) cudaFreeHost(ptr_);
  }
  void allocate(size_t bytes, const std::string& what) {
    if (bytes == 0) bytes = 1;
    cuda_check(cudaMallocHost(&ptr_, bytes), "cudaMallocHost (pinned) of " + std::to_string(bytes) + " bytes for " + what);
  }
  unsigned char* get() const { return static_cast<unsigned char*>(ptr_); }

 private:
  void* ptr_ = nullptr;
};

struct Stream {
  cudaStream_t handle = nullptr;
  Stream() = default;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream() {
    if (handle) cudaStreamDestroy(handle);
  }
};

struct Tensor {
  trt::Io io;
  DType dtype = DType::Float32;
  size_t element_bytes = 4;
  size_t capacity = 0;  // bytes, for the largest batch
  DeviceBuffer device;
  PinnedBuffer host;  // outputs only (the single input has its own staging below)
  nvinfer1::Dims shape{};  // current shape in the context
};

// ------------------------------------------------------------------------------------------------------ backend
class TensorRtBackend final : public Backend, public ImageInput {
 public:
  TensorRtBackend(const std::string& engine_path, const BackendOptions& options) : path_(engine_path) {
    std::vector<char> blob = read_engine(engine_path);
    if (trt::loaded_major() != trt::kMajor) {
      fail(Status::BackendUnavailable,
           "libdefectrt was built against TensorRT " + trt::compiled_version() + " but the libnvinfer loaded is " +
               trt::loaded_version() + "; rebuild libdefectrt against the TensorRT installed here "
               "(cmake -DDEFECTRT_WITH_TENSORRT=ON -DTENSORRT_ROOT=...), or put the matching libnvinfer first on the "
               "library path");
    }
    int devices = 0;
    cuda_check(cudaGetDeviceCount(&devices), "cudaGetDeviceCount (is there a GPU and an NVIDIA driver?)");
    if (options.device < 0 || options.device >= devices) {
      fail(Status::InvalidArgument, "device " + std::to_string(options.device) + " does not exist (this machine has " +
                                        std::to_string(devices) + " CUDA device(s))");
    }
    device_ = options.device;
    cuda_check(cudaSetDevice(device_), "cudaSetDevice(" + std::to_string(device_) + ")");
    cuda_check(cudaStreamCreateWithFlags(&stream_holder_.handle, cudaStreamNonBlocking), "cudaStreamCreate");
    stream_ = stream_holder_.handle;
    use_graph_ = options.cuda_graph;

    init_builtin_plugins();
    load_plugin_libraries(options.plugin_libraries);  // before deserialising: the engine names their creators

    runtime_.reset(nvinfer1::createInferRuntime(logger()));
    if (!runtime_) fail(Status::BackendUnavailable, "createInferRuntime failed (TensorRT " + trt::loaded_version() + ")");
    logger().clear();
    engine_.reset(runtime_->deserializeCudaEngine(blob.data(), blob.size()));
    if (!engine_) {
      fail(Status::UnsupportedFormat, "could not deserialise engine '" + engine_path + "' with TensorRT " +
                                          trt::loaded_version() + "." + logger().errors() + "\n" + kRebuildHint +
                                          " If it uses a plugin (DrtGridSample), pass the plugin library.");
    }
    blob.clear();
    blob.shrink_to_fit();
    if (trt::implicit_batch(*engine_)) {
      fail(Status::UnsupportedFormat, "engine '" + engine_path + "' was built in implicit-batch mode; " + kRebuildHint);
    }
    context_.reset(engine_->createExecutionContext());
    if (!context_) fail(Status::OutOfMemory, "createExecutionContext failed" + logger().errors());
    describe_io();
    allocate();
  }

  ~TensorRtBackend() override {
    if (graph_exec_) cudaGraphExecDestroy(graph_exec_);
  }

  const char* name() const override { return "tensorrt"; }
  std::vector<TensorInfo> inputs() const override { return {info(input_)}; }
  std::vector<TensorInfo> outputs() const override {
    std::vector<TensorInfo> v;
    for (const Tensor& t : outputs_) v.push_back(info(t));
    return v;
  }
  int min_batch() const override { return min_batch_; }
  int max_batch() const override { return max_batch_; }

  void infer(const float* input, const std::vector<int64_t>& shape, std::vector<HostTensor>& out) override {
    if (!input) fail(Status::InvalidArgument, "input is null");
    std::lock_guard<std::mutex> lock(mutex_);
    cuda_check(cudaSetDevice(device_), "cudaSetDevice");
    set_shape(shape);
    const size_t elements = volume(input_.shape, "input");
    unsigned char* staging = input_staging_.get();
    if (input_.dtype == DType::Float32) {
      std::memcpy(staging, input, elements * sizeof(float));
    } else {  // float16 engine input (built with --inputIOFormats=fp16:chw): same rounding as the GPU letterbox
      uint16_t* half = reinterpret_cast<uint16_t*>(staging);
      for (size_t i = 0; i < elements; ++i) half[i] = cuda::float_to_half_bits(input[i]);
    }
    cuda_check(cudaMemcpyAsync(input_.device.get(), staging, elements * input_.element_bytes, cudaMemcpyHostToDevice,
                               stream_),
               "copy of the input to the GPU");
    run_and_fetch(out);
  }

  void infer_images(const InputImage* images, int count, int dst_w, int dst_h, std::vector<lb::Geometry>& geometry,
                    std::vector<HostTensor>& out) override {
    if (!images || count <= 0) fail(Status::InvalidArgument, "no images given");
    if (count > max_batch_) {
      fail(Status::InvalidArgument, std::to_string(count) + " images in one call; the engine takes at most " +
                                        std::to_string(max_batch_) + " (split the batch)");
    }
    std::lock_guard<std::mutex> lock(mutex_);
    cuda_check(cudaSetDevice(device_), "cudaSetDevice");
    const int batch = std::max(count, min_batch_);  // a fixed batch larger than the call: the rest are zeros
    set_shape({batch, 3, dst_h, dst_w});
    const size_t per_image = checked_mul(checked_mul(static_cast<size_t>(dst_w), static_cast<size_t>(dst_h), "input"),
                                         3 * input_.element_bytes, "input");
    const cuda::OutType type = input_.dtype == DType::Float16 ? cuda::OutType::Float16 : cuda::OutType::Float32;
    // Every image is checked, and the staging buffer sized for the largest host image, before anything is queued:
    // a bad image fails without side effects, and the buffer is never freed under a queued copy or kernel.
    size_t staging = 0;
    for (int i = 0; i < count; ++i) {
      const InputImage& im = images[i];
      cuda::check_letterbox_args(im.data, im.stride, im.format, im.width, im.height, input_.device.get(), dst_w, dst_h);
      if (im.on_device) continue;
      const std::string what = "image " + std::to_string(i);
      const size_t row = checked_mul(static_cast<size_t>(im.width), static_cast<size_t>(cuda::bytes_per_pixel(im.format)),
                                     what);
      const size_t bytes = checked_mul(row, static_cast<size_t>(im.height), what);
      if (static_cast<unsigned long long>(bytes) > kMaxImageBytes) fail(Status::InvalidArgument, what + " is too large");
      staging = std::max(staging, bytes);
    }
    if (image_staging_.bytes() < staging) {
      cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize before growing the image staging buffer");
      image_staging_.allocate(staging, "the image staging buffer");
    }
    geometry.clear();
    for (int i = 0; i < count; ++i) {
      const InputImage& im = images[i];
      const std::string what = "image " + std::to_string(i);
      const uint8_t* src = im.data;
      size_t stride = im.stride;
      if (!im.on_device) {  // copied once into the reusable device buffer, rows packed; the stream orders the reuse
        const size_t row = static_cast<size_t>(im.width) * static_cast<size_t>(cuda::bytes_per_pixel(im.format));
        cuda_check(cudaMemcpy2DAsync(image_staging_.get(), row, im.data, im.stride, row,
                                     static_cast<size_t>(im.height), cudaMemcpyHostToDevice, stream_),
                   "copy of " + what + " to the GPU");
        src = static_cast<const uint8_t*>(image_staging_.get());
        stride = row;
      }
      unsigned char* dst = static_cast<unsigned char*>(input_.device.get()) + static_cast<size_t>(i) * per_image;
      const int rc = cuda::letterbox_launch(src, stride, im.format, im.width, im.height, dst, type, dst_w, dst_h,
                                            static_cast<void*>(stream_));
      cuda_check(static_cast<cudaError_t>(rc), "letterbox kernel launch for " + what);
      geometry.push_back(lb::geometry(im.width, im.height, dst_w, dst_h));
    }
    if (batch > count) {
      unsigned char* rest = static_cast<unsigned char*>(input_.device.get()) + static_cast<size_t>(count) * per_image;
      cuda_check(cudaMemsetAsync(rest, 0, static_cast<size_t>(batch - count) * per_image, stream_),
                 "zeroing the unused images of the batch");
    }
    run_and_fetch(out);
  }

 private:
  static TensorInfo info(const Tensor& t) {
    TensorInfo i;
    i.name = t.io.name;
    i.dtype = t.dtype;
    for (int k = 0; k < t.shape.nbDims; ++k) i.shape.push_back(static_cast<int64_t>(t.shape.d[k]));
    return i;
  }

  void describe_io() {
    const std::vector<trt::Io> io = trt::list_io(*engine_);
    int n_inputs = 0;
    for (const trt::Io& t : io) n_inputs += t.is_input ? 1 : 0;
    if (n_inputs != 1) {
      fail(Status::UnsupportedFormat, "engine '" + path_ + "' has " + std::to_string(n_inputs) +
                                          " inputs; a detector engine has exactly one (the images)");
    }
    if (engine_->getNbOptimizationProfiles() < 1) fail(Status::UnsupportedFormat, "engine has no optimisation profile");
    for (const trt::Io& t : io) {
      Tensor* tensor = nullptr;
      if (t.is_input) {
        tensor = &input_;
      } else {
        outputs_.emplace_back();
        tensor = &outputs_.back();
      }
      tensor->io = t;
      if (!trt::to_dtype(t.type, &tensor->dtype, &tensor->element_bytes)) {
        fail(Status::UnsupportedFormat, "tensor '" + t.name + "' is " + trt::type_name(t.type) +
                                            "; rebuild the engine with float32/float16/int32 I/O");
      }
      tensor->shape = trt::engine_shape(*engine_, t);
    }
    const nvinfer1::Dims d = input_.shape;
    if (d.nbDims != 4 || d.d[1] != 3) {
      fail(Status::UnsupportedFormat, "input '" + input_.io.name + "' has shape " + dims_str(d) +
                                          "; expected (batch, 3, height, width)");
    }
    if (input_.dtype != DType::Float32 && input_.dtype != DType::Float16) {
      fail(Status::UnsupportedFormat, "input '" + input_.io.name + "' must be float32 or float16");
    }
    max_input_ = d;
    min_input_ = d;
    bool dynamic = false;
    for (int i = 0; i < d.nbDims; ++i) dynamic = dynamic || d.d[i] < 0;
    if (dynamic) {
      min_input_ = trt::profile_shape(*engine_, input_.io, nvinfer1::OptProfileSelector::kMIN);
      max_input_ = trt::profile_shape(*engine_, input_.io, nvinfer1::OptProfileSelector::kMAX);
      if (min_input_.nbDims != 4 || max_input_.nbDims != 4) {
        fail(Status::UnsupportedFormat, "input '" + input_.io.name + "': profile 0 has no 4-D bounds");
      }
    }
    for (int i = 0; i < 4; ++i) {
      if (min_input_.d[i] < 1 || max_input_.d[i] < min_input_.d[i] || max_input_.d[i] > (1 << 20)) {
        fail(Status::UnsupportedFormat, "input '" + input_.io.name + "': profile bounds " + dims_str(min_input_) +
                                            " .. " + dims_str(max_input_) + " are not usable");
      }
    }
    min_batch_ = static_cast<int>(min_input_.d[0]);
    max_batch_ = static_cast<int>(max_input_.d[0]);
  }

  // Sizes every buffer for the largest input of profile 0: outputs are read from the context at that shape.
  void allocate() {
    if (!trt::set_input_shape(*context_, input_.io, max_input_)) {
      fail(Status::UnsupportedFormat, "the engine refused its own largest profile shape " + dims_str(max_input_) +
                                          logger().errors());
    }
    input_.shape = max_input_;
    input_.capacity = checked_mul(volume(max_input_, "input"), input_.element_bytes, "input");
    input_.device.allocate(input_.capacity, "input '" + input_.io.name + "'");
    input_staging_.allocate(input_.capacity, "input '" + input_.io.name + "'");
    for (Tensor& t : outputs_) {
      t.shape = trt::context_shape(*context_, t.io);
      t.capacity = checked_mul(volume(t.shape, "output '" + t.io.name + "'"), t.element_bytes, t.io.name);
      t.device.allocate(t.capacity, "output '" + t.io.name + "'");
      t.host.allocate(t.capacity, "output '" + t.io.name + "'");
    }
    std::vector<trt::Io> io;
    std::vector<void*> addresses;
    io.push_back(input_.io);
    addresses.push_back(input_.device.get());
    for (Tensor& t : outputs_) {
      io.push_back(t.io);
      addresses.push_back(t.device.get());
    }
    if (!trt::bind(*engine_, *context_, io, addresses, bindings_)) fail(Status::Internal, "binding tensor addresses failed");
  }

  void set_shape(const std::vector<int64_t>& shape) {
    if (shape.size() != 4) fail(Status::InvalidArgument, "input shape must be (batch, 3, height, width)");
    nvinfer1::Dims d = input_.shape;
    d.nbDims = 4;
    for (int i = 0; i < 4; ++i) {
      const int64_t v = shape[static_cast<size_t>(i)];
      if (v < min_input_.d[i] || v > max_input_.d[i]) {
        fail(Status::InvalidArgument, "input shape dimension " + std::to_string(i) + " is " + std::to_string(v) +
                                          "; the engine accepts " + std::to_string(static_cast<long long>(min_input_.d[i])) +
                                          " .. " + std::to_string(static_cast<long long>(max_input_.d[i])) +
                                          (i == 0 ? " (batch: split larger batches)" : ""));
      }
      d.d[i] = static_cast<decltype(d.d[i] + 0)>(v);
    }
    bool same = true;
    for (int i = 0; i < 4; ++i) same = same && d.d[i] == input_.shape.d[i];
    if (same && shape_set_) return;
    if (!trt::set_input_shape(*context_, input_.io, d)) {
      fail(Status::InvalidArgument, "the engine refused input shape " + dims_str(d) + logger().errors());
    }
    input_.shape = d;
    shape_set_ = true;
    for (Tensor& t : outputs_) {
      t.shape = trt::context_shape(*context_, t.io);
      const size_t bytes = checked_mul(volume(t.shape, "output '" + t.io.name + "'"), t.element_bytes, t.io.name);
      if (bytes > t.capacity) fail(Status::Internal, "output '" + t.io.name + "' grew beyond its profile-max size");
    }
    drop_graph();  // a graph is only valid for the shape it was captured with
  }

  void drop_graph() {
    if (graph_exec_) cudaGraphExecDestroy(graph_exec_);
    graph_exec_ = nullptr;
    graph_warm_ = false;
  }

  void enqueue() {
    if (!trt::enqueue(*context_, bindings_, stream_)) {
      fail(Status::RuntimeFailure, "enqueue failed" + logger().errors());
    }
  }

  // CUDA graph of the enqueue: the first call of a shape runs normally (TensorRT does its shape-dependent set-up
  // there), the second captures, later ones replay. A capture TensorRT or a plugin does not support turns graphs off
  // for this backend with one message; the plain enqueue keeps working.
  void run_model() {
    if (!use_graph_) return enqueue();
    if (graph_exec_) {
      cuda_check(cudaGraphLaunch(graph_exec_, stream_), "cudaGraphLaunch");
      return;
    }
    if (!graph_warm_) {
      enqueue();
      graph_warm_ = true;
      return;
    }
    cudaGraph_t graph = nullptr;
    bool ok = cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal) == cudaSuccess;
    const bool enqueued = ok && trt::enqueue(*context_, bindings_, stream_);
    ok = cudaStreamEndCapture(stream_, &graph) == cudaSuccess && enqueued && graph != nullptr;
#if CUDART_VERSION >= 12000
    ok = ok && cudaGraphInstantiate(&graph_exec_, graph, 0) == cudaSuccess;
#else
    ok = ok && cudaGraphInstantiate(&graph_exec_, graph, nullptr, nullptr, 0) == cudaSuccess;
#endif
    if (graph) cudaGraphDestroy(graph);
    if (ok) {
      cuda_check(cudaGraphLaunch(graph_exec_, stream_), "cudaGraphLaunch");
      return;
    }
    cudaGetLastError();  // clear the capture's error state
    graph_exec_ = nullptr;
    use_graph_ = false;
    std::fprintf(stderr, "[defectrt][TensorRT] warning: this engine cannot be captured in a CUDA graph; "
                         "running without one\n");
    enqueue();
  }

  void run_and_fetch(std::vector<HostTensor>& out) {
    run_model();
    std::vector<size_t> bytes;
    for (Tensor& t : outputs_) {
      bytes.push_back(checked_mul(volume(t.shape, t.io.name), t.element_bytes, t.io.name));
      cuda_check(cudaMemcpyAsync(t.host.get(), t.device.get(), bytes.back(), cudaMemcpyDeviceToHost, stream_),
                 "copy of output '" + t.io.name + "' from the GPU");
    }
    cuda_check(cudaStreamSynchronize(stream_), "inference (cudaStreamSynchronize)");
    out.clear();
    out.reserve(outputs_.size());
    for (size_t i = 0; i < outputs_.size(); ++i) {
      const Tensor& t = outputs_[i];
      HostTensor h;
      h.name = t.io.name;
      h.dtype = t.dtype;
      for (int k = 0; k < t.shape.nbDims; ++k) h.shape.push_back(static_cast<int64_t>(t.shape.d[k]));
      h.data.assign(t.host.get(), t.host.get() + bytes[i]);
      out.push_back(std::move(h));
    }
  }

  std::string path_;
  int device_ = 0;
  // Declaration order is destruction order reversed: buffers, then context, engine, runtime, then the stream.
  Stream stream_holder_;
  cudaStream_t stream_ = nullptr;
  TrtPtr<nvinfer1::IRuntime> runtime_;
  TrtPtr<nvinfer1::ICudaEngine> engine_;
  TrtPtr<nvinfer1::IExecutionContext> context_;
  Tensor input_;
  std::deque<Tensor> outputs_;  // deque: Tensor owns buffers and does not move
  PinnedBuffer input_staging_;
  DeviceBuffer image_staging_;
  std::vector<void*> bindings_;
  nvinfer1::Dims min_input_{};
  nvinfer1::Dims max_input_{};
  int min_batch_ = 1;
  int max_batch_ = 1;
  bool shape_set_ = false;
  bool use_graph_ = false;
  bool graph_warm_ = false;
  cudaGraphExec_t graph_exec_ = nullptr;
  std::mutex mutex_;
};

}  // namespace

std::unique_ptr<Backend> make_tensorrt_backend(const std::string& engine_path, const BackendOptions& options) {
  return std::unique_ptr<Backend>(new TensorRtBackend(engine_path, options));
}

}  // namespace drt
