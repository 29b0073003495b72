// ONNX Runtime backend through its C API (onnxruntime_c_api.h): compiled against API version 29 and requesting it
// from OrtGetApiBase(), so it runs with that release and every newer one (ONNX Runtime keeps older API versions).
// Session settings as the Python backend: graph optimisation ALL, sequential execution, inter-op 1 thread,
// intra-op `threads` (0: ONNX Runtime's default), warnings off.
#include <onnxruntime_c_api.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <string>

#include "backend.h"
#include "onnxruntime_backend.h"
#include "status.h"
#include "util.h"


namespace drt {
namespace {

const OrtApi* api() {
  static const OrtApi* a = [] {
    const OrtApiBase* base = OrtGetApiBase();
    return base ? base->GetApi(ORT_API_VERSION) : nullptr;
  }();
  if (a == nullptr)
    throw Error(Status::BackendUnavailable, "the ONNX Runtime library found at run time is older than API version " +
                                                std::to_string(ORT_API_VERSION) + " this library was built for; "
                                                "put onnxruntime 1.22 or newer beside it");
  return a;
}

// Turns an OrtStatus into drt::Error (and releases it).
void check(OrtStatus* s, const std::string& what, Status code = Status::RuntimeFailure) {
  if (s == nullptr) return;
  std::string msg = api()->GetErrorMessage(s);
  OrtErrorCode ec = api()->GetErrorCode(s);
  api()->ReleaseStatus(s);
  if (ec == ORT_FAIL && msg.find("bad_alloc") != std::string::npos) code = Status::OutOfMemory;
  throw Error(code, what + ": " + msg);
}

OrtEnv* env() {
  static std::mutex m;
  static OrtEnv* e = nullptr;  // lives until the process exits: ONNX Runtime cannot be re-initialised
  std::lock_guard<std::mutex> lock(m);
  if (e == nullptr) {
    OrtStatus* s = api()->CreateEnv(ORT_LOGGING_LEVEL_ERROR, "defectrt", &e);
    if (s != nullptr) {
      e = nullptr;
      check(s, "cannot start ONNX Runtime", Status::BackendUnavailable);
    }
  }
  return e;
}

// A status we cannot act on (freeing memory): released, not thrown.
void release(OrtStatus* s) {
  if (s != nullptr) api()->ReleaseStatus(s);
}

DType to_dtype(ONNXTensorElementDataType t, const std::string& name) {
  switch (t) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return DType::Float32;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return DType::Float16;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: return DType::Int32;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: return DType::Int64;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8: return DType::Uint8;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL: return DType::Bool;
    default:
      throw Error(Status::UnsupportedFormat, "tensor " + name + " has element type " + std::to_string(int(t)) +
                                                 "; a defectrt detector uses float32/16 or int32/64");
  }
}

size_t dtype_bytes(DType d) {
  return d == DType::Float32 || d == DType::Int32 ? 4 : d == DType::Float16 ? 2 : d == DType::Int64 ? 8 : 1;
}

uint16_t float_to_half(float f) {  // round to nearest even, as numpy's astype(float16)
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t absx = x & 0x7FFFFFFFu;
  if (absx >= 0x7F800000u) return static_cast<uint16_t>(sign | 0x7C00u | (absx > 0x7F800000u ? 0x200u : 0u));
  if (absx >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // overflows to inf
  if (absx < 0x38800000u) {                                                // subnormal or zero in half
    if (absx < 0x33000000u) return static_cast<uint16_t>(sign);
    const uint32_t mant = (absx & 0x7FFFFFu) | 0x800000u;
    const int shift = 126 - static_cast<int>(absx >> 23) + 13 + 1;
    uint32_t v = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (v & 1u))) ++v;
    return static_cast<uint16_t>(sign | v);
  }
  uint32_t v = ((absx >> 13) - (112u << 10));
  const uint32_t rem = absx & 0x1FFFu;
  if (rem > 0x1000u || (rem == 0x1000u && (v & 1u))) ++v;
  return static_cast<uint16_t>(sign | v);
}

struct SessionDeleter {
  void operator()(OrtSession* s) const { api()->ReleaseSession(s); }
};

class OnnxRuntimeBackend : public Backend {
 public:
  OnnxRuntimeBackend(const std::string& path, const BackendOptions& options) : path_(path) {
    const OrtApi* a = api();
    OrtSessionOptions* so = nullptr;
    check(a->CreateSessionOptions(&so), "ONNX Runtime session options");
    std::unique_ptr<OrtSessionOptions, void (*)(OrtSessionOptions*)> so_guard(
        so, [](OrtSessionOptions* p) { api()->ReleaseSessionOptions(p); });
    check(a->SetSessionGraphOptimizationLevel(so, ORT_ENABLE_ALL), "ONNX Runtime options");
    check(a->SetSessionExecutionMode(so, ORT_SEQUENTIAL), "ONNX Runtime options");
    check(a->SetInterOpNumThreads(so, 1), "ONNX Runtime options");
    if (options.threads > 0) check(a->SetIntraOpNumThreads(so, options.threads), "ONNX Runtime options");
    check(a->SetSessionLogSeverityLevel(so, 3), "ONNX Runtime options");
    OrtSession* session = nullptr;
#if defined(_WIN32)
    const std::wstring wpath = widen(path);
    OrtStatus* s = a->CreateSession(env(), wpath.c_str(), so, &session);
#else
    OrtStatus* s = a->CreateSession(env(), path.c_str(), so, &session);
#endif
    if (s != nullptr) {
      std::string msg = a->GetErrorMessage(s);
      a->ReleaseStatus(s);
      if (msg.find("EfficientNMS_TRT") != std::string::npos)
        throw Error(Status::UnsupportedFormat, path + " contains the TensorRT-only EfficientNMS_TRT op; run it with "
                                                      "backend \"tensorrt\" (on the device) or export with --nms none "
                                                      "/ onnx for ONNX Runtime");
      const size_t eol = msg.find('\n');
      if (eol != std::string::npos) msg.resize(eol);
      if (msg.size() > 300) msg.resize(300);
      throw Error(msg.find("bad_alloc") != std::string::npos ? Status::OutOfMemory : Status::RuntimeFailure,
                  path + ": ONNX Runtime cannot load it (" + msg + "); is it an ONNX model? Re-export it with "
                         "`defectrt export`");
    }
    session_.reset(session);
    check(a->GetAllocatorWithDefaultOptions(&allocator_), "ONNX Runtime allocator");
    read_io(true);
    read_io(false);
    if (inputs_.size() != 1)
      throw Error(Status::UnsupportedFormat, path + " has " + std::to_string(inputs_.size()) +
                                                 " inputs; a defectrt detector has one (images (B, 3, H, W))");
    const TensorInfo& in = inputs_[0];
    if (in.shape.size() != 4 || (in.shape[1] != 3 && in.shape[1] != -1))
      throw Error(Status::UnsupportedFormat, path + ": input " + in.name + " is not (B, 3, H, W)");
    if (in.dtype != DType::Float32 && in.dtype != DType::Float16)
      throw Error(Status::UnsupportedFormat, path + ": input " + in.name + " is not float32 or float16");
    read_metadata();
    check(a->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &memory_), "ONNX Runtime memory info");
  }

  ~OnnxRuntimeBackend() override {
    if (memory_) api()->ReleaseMemoryInfo(memory_);
  }

  const char* name() const override { return "onnxruntime"; }
  std::vector<TensorInfo> inputs() const override { return inputs_; }
  std::vector<TensorInfo> outputs() const override { return outputs_; }
  int min_batch() const override { return inputs_[0].shape[0] > 0 ? static_cast<int>(inputs_[0].shape[0]) : 1; }
  int max_batch() const override {
    return inputs_[0].shape[0] > 0 ? static_cast<int>(inputs_[0].shape[0]) : (1 << 16);
  }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  void infer(const float* input, const std::vector<int64_t>& shape, std::vector<HostTensor>& out) override {
    const OrtApi* a = api();
    const size_t count = element_count(shape, "model input");
    OrtValue* in = nullptr;
    if (inputs_[0].dtype == DType::Float16) {
      half_.resize(count);
      for (size_t i = 0; i < count; ++i) half_[i] = float_to_half(input[i]);
      check(a->CreateTensorWithDataAsOrtValue(memory_, half_.data(), checked_mul(count, 2, "model input"),
                                              shape.data(), shape.size(), ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, &in),
            "ONNX Runtime input");
    } else {
      check(a->CreateTensorWithDataAsOrtValue(memory_, const_cast<float*>(input), checked_mul(count, 4, "model input"),
                                              shape.data(), shape.size(), ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &in),
            "ONNX Runtime input");
    }
    std::unique_ptr<OrtValue, void (*)(OrtValue*)> in_guard(in, [](OrtValue* v) { api()->ReleaseValue(v); });
    std::vector<OrtValue*> results(outputs_.size(), nullptr);
    const char* in_name = inputs_[0].name.c_str();
    OrtStatus* s = a->Run(session_.get(), nullptr, &in_name, &in, 1, out_names_.data(), out_names_.size(),
                          results.data());
    struct Release {
      std::vector<OrtValue*>* v;
      ~Release() {
        for (OrtValue* x : *v)
          if (x) api()->ReleaseValue(x);
      }
    } release{&results};
    check(s, path_ + ": ONNX Runtime failed to run the model");
    out.resize(outputs_.size());
    for (size_t i = 0; i < results.size(); ++i) {
      OrtTensorTypeAndShapeInfo* info = nullptr;
      check(a->GetTensorTypeAndShape(results[i], &info), "ONNX Runtime output shape");
      std::unique_ptr<OrtTensorTypeAndShapeInfo, void (*)(OrtTensorTypeAndShapeInfo*)> info_guard(
          info, [](OrtTensorTypeAndShapeInfo* p) { api()->ReleaseTensorTypeAndShapeInfo(p); });
      ONNXTensorElementDataType et;
      size_t rank = 0;
      check(a->GetTensorElementType(info, &et), "ONNX Runtime output type");
      check(a->GetDimensionsCount(info, &rank), "ONNX Runtime output rank");
      HostTensor& t = out[i];
      t.name = outputs_[i].name;
      t.dtype = to_dtype(et, t.name);
      t.shape.assign(rank, 0);
      check(a->GetDimensions(info, t.shape.data(), rank), "ONNX Runtime output dims");
      const size_t bytes = checked_mul(element_count(t.shape, "model output"), dtype_bytes(t.dtype), "model output");
      void* data = nullptr;
      check(a->GetTensorMutableData(results[i], &data), "ONNX Runtime output data");
      t.data.resize(bytes);
      if (bytes) std::memcpy(t.data.data(), data, bytes);
    }
  }

 private:
  void read_io(bool input) {
    const OrtApi* a = api();
    size_t n = 0;
    check(input ? a->SessionGetInputCount(session_.get(), &n) : a->SessionGetOutputCount(session_.get(), &n),
          "ONNX Runtime model io");
    for (size_t i = 0; i < n; ++i) {
      char* name = nullptr;
      check(input ? a->SessionGetInputName(session_.get(), i, allocator_, &name)
                  : a->SessionGetOutputName(session_.get(), i, allocator_, &name),
            "ONNX Runtime io name");
      TensorInfo t;
      t.name = name;
      check(a->AllocatorFree(allocator_, name), "ONNX Runtime free");
      OrtTypeInfo* ti = nullptr;
      check(input ? a->SessionGetInputTypeInfo(session_.get(), i, &ti) : a->SessionGetOutputTypeInfo(session_.get(), i, &ti),
            "ONNX Runtime io type");
      std::unique_ptr<OrtTypeInfo, void (*)(OrtTypeInfo*)> guard(ti, [](OrtTypeInfo* p) { api()->ReleaseTypeInfo(p); });
      const OrtTensorTypeAndShapeInfo* tsi = nullptr;
      check(a->CastTypeInfoToTensorInfo(ti, &tsi), "ONNX Runtime io type");
      if (tsi == nullptr) throw Error(Status::UnsupportedFormat, path_ + ": io " + t.name + " is not a tensor");
      ONNXTensorElementDataType et;
      size_t rank = 0;
      check(a->GetTensorElementType(tsi, &et), "ONNX Runtime io type");
      check(a->GetDimensionsCount(tsi, &rank), "ONNX Runtime io rank");
      t.dtype = to_dtype(et, t.name);
      t.shape.assign(rank, 0);
      check(a->GetDimensions(tsi, t.shape.data(), rank), "ONNX Runtime io dims");
      for (int64_t& d : t.shape)
        if (d <= 0) d = -1;
      (input ? inputs_ : outputs_).push_back(t);
    }
    if (!input) {
      for (const TensorInfo& t : outputs_) out_names_.push_back(t.name.c_str());
    }
  }

  void read_metadata() {
    const OrtApi* a = api();
    OrtModelMetadata* md = nullptr;
    check(a->SessionGetModelMetadata(session_.get(), &md), "ONNX Runtime metadata");
    std::unique_ptr<OrtModelMetadata, void (*)(OrtModelMetadata*)> guard(
        md, [](OrtModelMetadata* p) { api()->ReleaseModelMetadata(p); });
    char** keys = nullptr;
    int64_t n = 0;
    check(a->ModelMetadataGetCustomMetadataMapKeys(md, allocator_, &keys, &n), "ONNX Runtime metadata");
    for (int64_t i = 0; i < n; ++i) {
      char* value = nullptr;
      OrtStatus* s = a->ModelMetadataLookupCustomMetadataMap(md, allocator_, keys[i], &value);
      if (s == nullptr && value != nullptr) {
        metadata_[keys[i]] = value;
        release(a->AllocatorFree(allocator_, value));
      } else if (s != nullptr) {
        a->ReleaseStatus(s);
      }
      release(a->AllocatorFree(allocator_, keys[i]));
    }
    if (keys) release(a->AllocatorFree(allocator_, keys));
  }

  std::string path_;
  std::unique_ptr<OrtSession, SessionDeleter> session_;
  OrtAllocator* allocator_ = nullptr;
  OrtMemoryInfo* memory_ = nullptr;
  std::vector<TensorInfo> inputs_, outputs_;
  std::vector<const char*> out_names_;
  std::map<std::string, std::string> metadata_;
  std::vector<uint16_t> half_;
};

}  // namespace

void init_onnxruntime() { env(); }

std::unique_ptr<Backend> make_onnxruntime_backend(const std::string& model_path, const BackendOptions& options) {
  return std::unique_ptr<Backend>(new OnnxRuntimeBackend(model_path, options));
}

std::map<std::string, std::string> backend_metadata(const Backend& backend) {
  const OnnxRuntimeBackend* ort = dynamic_cast<const OnnxRuntimeBackend*>(&backend);
  return ort ? ort->metadata() : std::map<std::string, std::string>();
}

}  // namespace drt
