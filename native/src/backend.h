// One inference backend (ONNX Runtime, TensorRT): a model in, float32 NCHW images in, host tensors out.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace drt {

enum class DType : int { Float32 = 0, Float16 = 1, Int32 = 2, Int64 = 3, Uint8 = 4, Bool = 5 };

struct TensorInfo {
  std::string name;
  DType dtype = DType::Float32;
  std::vector<int64_t> shape;  // -1 for a dynamic dimension
};

struct HostTensor {
  std::string name;
  DType dtype = DType::Float32;
  std::vector<int64_t> shape;
  std::vector<unsigned char> data;  // contiguous, row-major, dtype elements
};

struct BackendOptions {
  int threads = 0;                          // 0 = the runtime's default
  int device = 0;                           // GPU index (TensorRT)
  std::vector<std::string> plugin_libraries;  // loaded before an engine is deserialised (TensorRT)
  bool cuda_graph = false;                  // capture the enqueue in a CUDA graph (TensorRT)
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  virtual std::vector<TensorInfo> inputs() const = 0;
  virtual std::vector<TensorInfo> outputs() const = 0;
  // Smallest and largest batch the model accepts (equal for a static batch).
  virtual int min_batch() const = 0;
  virtual int max_batch() const = 0;
  // input: contiguous float32 NCHW of `shape` (B, 3, H, W). `out` is replaced by one tensor per output, in outputs() order.
  virtual void infer(const float* input, const std::vector<int64_t>& shape, std::vector<HostTensor>& out) = 0;
};

std::unique_ptr<Backend> make_onnxruntime_backend(const std::string& model_path, const BackendOptions& options);
#if defined(DEFECTRT_WITH_TENSORRT)
std::unique_ptr<Backend> make_tensorrt_backend(const std::string& engine_path, const BackendOptions& options);
#endif

}  // namespace drt
