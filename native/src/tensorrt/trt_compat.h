// The one place that knows which TensorRT it is compiled against. Everything else in the TensorRT backend calls these
// helpers and never tests NV_TENSORRT_MAJOR itself.
//
//   8.0 - 8.4   binding API: binding indices, setBindingDimensions, enqueueV2 with an array of device pointers
//   8.5 - 11.x  name-based tensor API: getIOTensorName, setInputShape, setTensorAddress, enqueueV3
//               (8.5 / 8.6 still have the binding API, deprecated; 10.0 removed it)
//   10.0        Dims became Dims64 (int64 extents); data types BF16 / INT64 / INT4 added
//
// The version comes from NvInferVersion.h: 10.16 / 11.x define it through TRT_MAJOR_ENTERPRISE etc., with
// NV_TENSORRT_MAJOR / MINOR still defined from those, so NV_TENSORRT_* is read here for every release.
// UNVERIFIED ON HARDWARE: compiled and linked (stub libnvinfer) against the headers of 8.0 ... 11.1; never run.
#pragma once
#include <NvInfer.h>
#include <NvInferVersion.h>

#include <cstdint>
#include <string>
#include <vector>

#include "../backend.h"

#if !defined(NV_TENSORRT_MAJOR) || !defined(NV_TENSORRT_MINOR)
#error "NvInferVersion.h defines no NV_TENSORRT_MAJOR / NV_TENSORRT_MINOR: not a TensorRT 8.0+ header set"
#endif
#if NV_TENSORRT_MAJOR < 8
#error "defectrt's TensorRT backend needs TensorRT 8.0 or newer (JetPack 4.6+)"
#endif

#if NV_TENSORRT_MAJOR > 8 || NV_TENSORRT_MINOR >= 5
#define DRT_TRT_TENSOR_API 1
#else
#define DRT_TRT_TENSOR_API 0
#endif

namespace drt {
namespace trt {

constexpr int kMajor = NV_TENSORRT_MAJOR;
constexpr int kMinor = NV_TENSORRT_MINOR;
constexpr int kPatch = NV_TENSORRT_PATCH;
constexpr bool kTensorApi = DRT_TRT_TENSOR_API != 0;

// Major version of the libnvinfer actually loaded (getInferLibVersion: 8.x encodes M*1000+m*100+p, 10.x M*10000+...).
inline int loaded_major() {
  const int32_t v = getInferLibVersion();
  return v >= 100000 ? v / 10000 : v / 1000;
}

inline std::string loaded_version() {
  const int32_t v = getInferLibVersion();
  const int base = v >= 100000 ? 10000 : 1000;
  return std::to_string(v / base) + "." + std::to_string((v % base) / 100) + "." + std::to_string(v % 100);
}

inline std::string compiled_version() {
  return std::to_string(kMajor) + "." + std::to_string(kMinor) + "." + std::to_string(kPatch);
}

// One input or output of the engine, however the API names it.
struct Io {
  std::string name;
  int32_t index = -1;  // binding index (binding API) or I/O tensor index (tensor API)
  bool is_input = false;
  nvinfer1::DataType type = nvinfer1::DataType::kFLOAT;
};

inline std::vector<Io> list_io(const nvinfer1::ICudaEngine& engine) {
  std::vector<Io> io;
#if DRT_TRT_TENSOR_API
  const int32_t n = engine.getNbIOTensors();
  for (int32_t i = 0; i < n; ++i) {
    Io t;
    const char* name = engine.getIOTensorName(i);
    t.name = name ? name : "";
    t.index = i;
    t.is_input = engine.getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT;
    t.type = engine.getTensorDataType(name);
    io.push_back(t);
  }
#else
  // With several optimisation profiles the binding API repeats every tensor per profile ("name [profile 1]"):
  // the first getNbBindings() / profiles belong to profile 0, the one this backend uses.
  const int32_t profiles = engine.getNbOptimizationProfiles();
  const int32_t n = engine.getNbBindings() / (profiles > 0 ? profiles : 1);
  for (int32_t i = 0; i < n; ++i) {
    Io t;
    const char* name = engine.getBindingName(i);
    t.name = name ? name : "";
    t.index = i;
    t.is_input = engine.bindingIsInput(i);
    t.type = engine.getBindingDataType(i);
    io.push_back(t);
  }
#endif
  return io;
}

// Engines built in implicit-batch mode (pre-8 parsers, the deprecated non-explicit flag) cannot take a dynamic batch.
inline bool implicit_batch(const nvinfer1::ICudaEngine& engine) {
#if NV_TENSORRT_MAJOR < 10
  return engine.hasImplicitBatchDimension();
#else
  (void)engine;
  return false;  // removed from the API: 10.x has explicit batch only
#endif
}

inline nvinfer1::Dims engine_shape(const nvinfer1::ICudaEngine& engine, const Io& io) {
#if DRT_TRT_TENSOR_API
  return engine.getTensorShape(io.name.c_str());
#else
  return engine.getBindingDimensions(io.index);
#endif
}

// Shape bound of optimisation profile 0 (kMIN / kOPT / kMAX) for an input with dynamic dimensions.
inline nvinfer1::Dims profile_shape(const nvinfer1::ICudaEngine& engine, const Io& io,
                                    nvinfer1::OptProfileSelector which) {
#if DRT_TRT_TENSOR_API
  return engine.getProfileShape(io.name.c_str(), 0, which);
#else
  return engine.getProfileDimensions(io.index, 0, which);
#endif
}

inline bool set_input_shape(nvinfer1::IExecutionContext& context, const Io& io, const nvinfer1::Dims& dims) {
#if DRT_TRT_TENSOR_API
  return context.setInputShape(io.name.c_str(), dims);
#else
  return context.setBindingDimensions(io.index, dims);
#endif
}

inline nvinfer1::Dims context_shape(const nvinfer1::IExecutionContext& context, const Io& io) {
#if DRT_TRT_TENSOR_API
  return context.getTensorShape(io.name.c_str());
#else
  return context.getBindingDimensions(io.index);
#endif
}

// Binds every tensor to its device address (`addresses` in list_io order). Tensor API: remembered by the context;
// binding API: kept in `bindings` (one slot per binding of every profile, as enqueueV2 reads them) for enqueue().
inline bool bind(const nvinfer1::ICudaEngine& engine, nvinfer1::IExecutionContext& context, const std::vector<Io>& io,
                 const std::vector<void*>& addresses, std::vector<void*>& bindings) {
#if DRT_TRT_TENSOR_API
  (void)engine;
  (void)bindings;
  for (size_t i = 0; i < io.size(); ++i) {
    if (!context.setTensorAddress(io[i].name.c_str(), addresses[i])) return false;
  }
  return true;
#else
  (void)context;
  bindings.assign(static_cast<size_t>(engine.getNbBindings()), nullptr);
  for (size_t i = 0; i < io.size(); ++i) bindings[static_cast<size_t>(io[i].index)] = addresses[i];
  return true;
#endif
}

inline bool enqueue(nvinfer1::IExecutionContext& context, const std::vector<void*>& bindings, cudaStream_t stream) {
#if DRT_TRT_TENSOR_API
  (void)bindings;
  return context.enqueueV3(stream);
#else
  return context.enqueueV2(bindings.data(), stream, nullptr);
#endif
}

// TensorRT data type -> the library's DType and element size; false for types the library does not hand out.
inline bool to_dtype(nvinfer1::DataType t, DType* out, size_t* bytes) {
  switch (t) {
    case nvinfer1::DataType::kFLOAT: *out = DType::Float32; *bytes = 4; return true;
    case nvinfer1::DataType::kHALF: *out = DType::Float16; *bytes = 2; return true;
    case nvinfer1::DataType::kINT32: *out = DType::Int32; *bytes = 4; return true;
    case nvinfer1::DataType::kBOOL: *out = DType::Bool; *bytes = 1; return true;
#if NV_TENSORRT_MAJOR > 8 || NV_TENSORRT_MINOR >= 5
    case nvinfer1::DataType::kUINT8: *out = DType::Uint8; *bytes = 1; return true;
#endif
#if NV_TENSORRT_MAJOR >= 10
    case nvinfer1::DataType::kINT64: *out = DType::Int64; *bytes = 8; return true;
#endif
    default: return false;
  }
}

inline const char* type_name(nvinfer1::DataType t) {
  switch (t) {
    case nvinfer1::DataType::kFLOAT: return "float32";
    case nvinfer1::DataType::kHALF: return "float16";
    case nvinfer1::DataType::kINT8: return "int8";
    case nvinfer1::DataType::kINT32: return "int32";
    case nvinfer1::DataType::kBOOL: return "bool";
    default: return "a type this build of defectrt does not hand out (uint8/int64/bf16/fp8/int4/fp4?)";
  }
}

}  // namespace trt
}  // namespace drt
