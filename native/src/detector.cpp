#include "detector.h"

#include <chrono>
#include <cmath>

#include "bundle.h"
#include "image_input.h"
#include "onnxruntime_backend.h"
#include "status.h"
#include "util.h"

namespace drt {

namespace {
const char* kEngineSuffixes[] = {".engine", ".plan", ".trt"};

bool is_engine_path(const std::string& path) {
  const std::string l = lower(path);
  for (const char* s : kEngineSuffixes)
    if (ends_with(l, s)) return true;
  return false;
}

std::unique_ptr<Backend> open_engine(const std::string& path, const BackendOptions& bo) {
#if defined(DEFECTRT_WITH_TENSORRT)
  return make_tensorrt_backend(path, bo);
#else
  (void)bo;
  throw Error(Status::BackendUnavailable, path + ": a TensorRT engine, but this libdefectrt was built without "
                                                 "TensorRT; rebuild it with -DDEFECTRT_WITH_TENSORRT=ON on the device "
                                                 "or use the bundle's ONNX model (backend \"onnxruntime\")");
#endif
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

Detector::Detector(const std::string& path, const DetectorOptions& o) {
  if (o.backend != "auto" && o.backend != "onnxruntime" && o.backend != "tensorrt")
    throw Error(Status::InvalidArgument, "backend \"" + o.backend + "\": expected auto, onnxruntime or tensorrt");
  if (!(o.conf < 0.f || (o.conf >= 0.f && o.conf <= 1.f)))
    throw Error(Status::InvalidArgument, "conf " + std::to_string(o.conf) + ": expected 0..1 (negative = default)");
  if (!(o.iou < 0.f || (o.iou >= 0.f && o.iou <= 1.f)))
    throw Error(Status::InvalidArgument, "iou " + std::to_string(o.iou) + ": expected 0..1 (negative = default)");
  if (o.max_det < 0)
    throw Error(Status::InvalidArgument, "max_det " + std::to_string(o.max_det) + ": expected >= 1 (0 = default)");
  if (o.threads < 0 || o.threads > 1024)
    throw Error(Status::InvalidArgument, "threads " + std::to_string(o.threads) + ": expected 1..1024 (0 = default)");
  if (path.compare(0, 5, "demo:") == 0)
    throw Error(Status::NotFound, path + ": demo bundles ship with the Python package, not with libdefectrt; build "
                                         "one with `defectrt export build` and pass its folder");
  if (!path_exists(path)) throw Error(Status::NotFound, path + ": no such file or folder");

  BackendOptions bo;
  bo.threads = o.threads;
  std::map<int, std::string> names;
  Thresholds stored;
  int want_h = 0, want_w = 0;
  std::string imgsz_source;
  if (is_directory(path)) {
    Bundle b = read_bundle(path);
    names = b.names;
    stored = b.thresholds;
    if (b.has_imgsz) {
      want_h = b.imgsz_h;
      want_w = b.imgsz_w;
      imgsz_source = path + "/manifest.json";
    }
    bool use_engine = o.backend != "onnxruntime" && !b.engine_path.empty();
    if (o.backend == "tensorrt" && b.engine_path.empty())
      throw Error(Status::UnsupportedFormat, "bundle " + path + " has no TensorRT engine; add one on the device with "
                                             "defectrt export build " + path + " --engine");
    if (use_engine) {
      try {
        backend_ = open_engine(b.engine_path, bo);
        reason_ = "TensorRT engine of the bundle";
      } catch (const Error& e) {
        if (o.backend == "tensorrt") throw;
        reason_ = std::string("ONNX Runtime because the engine did not load: ") + e.what();
      }
    } else {
      reason_ = o.backend == "onnxruntime" ? "ONNX Runtime asked for (backend onnxruntime)"
                                           : "ONNX Runtime: the bundle has no TensorRT engine";
    }
    if (!backend_) backend_ = make_onnxruntime_backend(b.model_path, bo);
  } else {
    if (!is_regular_file(path)) throw Error(Status::NotFound, path + ": not a regular file");
    const std::string l = lower(path);
    if (is_engine_path(path)) {
      if (o.backend == "onnxruntime")
        throw Error(Status::UnsupportedFormat, path + " is a TensorRT engine; ONNX Runtime needs the .onnx file");
      backend_ = open_engine(path, bo);
      reason_ = "TensorRT engine given";
      const std::string folder = path.substr(0, path.find_last_of("/\\") == std::string::npos
                                                    ? 0
                                                    : path.find_last_of("/\\"));
      if (!folder.empty() && is_bundle(folder)) {
        try {
          names = read_bundle(folder, false).names;  // engines carry no metadata: the manifest beside it names them
        } catch (const Error&) {
        }
      }
    } else if (ends_with(l, ".onnx")) {
      if (o.backend == "tensorrt")
        throw Error(Status::UnsupportedFormat, path + " is an ONNX model; build an engine first (defectrt export "
                                                      "build) or use backend onnxruntime");
      backend_ = make_onnxruntime_backend(path, bo);
      reason_ = "ONNX model given";
    } else {
      throw Error(Status::UnsupportedFormat, path + ": unsupported model format; give an .onnx file, a TensorRT "
                                                    "engine (.engine/.plan/.trt) or a bundle folder");
    }
  }
  backend_name_ = backend_->name();

  // Input size: an explicit (bundle) imgsz must agree with a fixed input shape; else the fixed shape; else metadata.
  const std::vector<TensorInfo> ins = backend_->inputs();
  if (ins.size() != 1 || ins[0].shape.size() != 4)
    throw Error(Status::UnsupportedFormat, path + ": the model's input is not one (B, 3, H, W) tensor");
  const int64_t fh = ins[0].shape[2], fw = ins[0].shape[3];
  const bool fixed = fh > 0 && fw > 0;
  std::map<std::string, std::string> meta = backend_metadata(*backend_);
  if (want_h > 0) {
    if (fixed && (fh != want_h || fw != want_w))
      throw Error(Status::UnsupportedFormat, "imgsz [" + std::to_string(want_h) + ", " + std::to_string(want_w) +
                                                 "] of " + imgsz_source + ": the model takes a fixed input of " +
                                                 std::to_string(fh) + "x" + std::to_string(fw) + "; rebuild the bundle");
    imgsz_h_ = want_h;
    imgsz_w_ = want_w;
  } else if (fixed) {
    if (fh > kMaxImgsz || fw > kMaxImgsz)
      throw Error(Status::UnsupportedFormat, path + ": input " + std::to_string(fh) + "x" + std::to_string(fw) +
                                                 " is larger than " + std::to_string(kMaxImgsz));
    imgsz_h_ = static_cast<int>(fh);
    imgsz_w_ = static_cast<int>(fw);
  } else if (!parse_imgsz(meta.count("imgsz") ? meta["imgsz"] : std::string(), &imgsz_h_, &imgsz_w_)) {
    throw Error(Status::UnsupportedFormat, path + " has a dynamic input size and no `imgsz` metadata; re-export it "
                                                  "with a fixed size or put it in a bundle");
  }
  batch_ = backend_->min_batch();
  if (batch_ < 1 || batch_ > 1024)
    throw Error(Status::UnsupportedFormat, path + ": the model's batch size " + std::to_string(batch_) +
                                               " is outside 1..1024");

  // Class names: model metadata, "class{i}" for the raw output's classes it does not name, then the bundle's.
  std::map<int, std::string> table = parse_names(meta.count("names") ? meta["names"] : std::string(), path);
  const std::vector<TensorInfo> outs = backend_->outputs();
  layout_ = output_layout(outs);
  if (outs.size() == 1 && outs[0].shape.size() == 3 && outs[0].shape[1] > 4) {
    const int64_t nc = outs[0].shape[1] - 4;
    if (nc > kMaxClasses)
      throw Error(Status::UnsupportedFormat, path + ": the output has " + std::to_string(nc) + " classes; at most " +
                                                 std::to_string(kMaxClasses) + " are supported");
    for (int i = 0; i < static_cast<int>(nc); ++i)
      if (!table.count(i)) table[i] = "class" + std::to_string(i);
  }
  for (const auto& kv : names) table[kv.first] = kv.second;
  if (!table.empty()) {
    const int n = table.rbegin()->first + 1;  // ids are bounded by kMaxClasses in parse_names
    class_names_.resize(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) class_names_[static_cast<size_t>(i)] = table.count(i) ? table[i] : std::to_string(i);
  }

  post_.conf = o.conf >= 0.f ? o.conf : (stored.has_conf ? stored.conf : 0.25f);
  post_.iou = o.iou >= 0.f ? o.iou : (stored.has_iou ? stored.iou : 0.45f);
  post_.max_det = o.max_det > 0 ? o.max_det : (stored.has_max_det ? stored.max_det : 300);
  const size_t blob = checked_mul(checked_mul(static_cast<size_t>(batch_), 3, "model input"),
                                  checked_mul(static_cast<size_t>(imgsz_h_), static_cast<size_t>(imgsz_w_),
                                              "model input"),
                                  "model input");
  blob_.assign(blob, 0.f);
}

std::vector<Detection> Detector::detect(const ImageView& image, StageTimes* times) {
  auto t0 = std::chrono::steady_clock::now();
  const lb::Geometry g = letterbox_geometry(image, imgsz_w_, imgsz_h_);  // also validates the image
  if (auto* gpu = dynamic_cast<ImageInput*>(backend_.get())) {
    // The backend letterboxes on the GPU (TensorRT; unverified on hardware): same arithmetic (lb::sample), so the
    // geometry it reports equals g. Pre-processing and inference are one call, timed as "infer".
    InputImage im;
    im.data = image.pixels;
    im.width = image.width;
    im.height = image.height;
    im.stride = image.stride;
    im.format = image.format;
    std::vector<lb::Geometry> geometry;
    gpu->infer_images(&im, 1, imgsz_w_, imgsz_h_, geometry, outputs_);
    auto t2 = std::chrono::steady_clock::now();
    std::vector<Detection> dets = postprocess(outputs_, layout_, 0, geometry.empty() ? g : geometry[0], post_);
    if (times) {
      times->pre = 0.0;
      times->infer = std::chrono::duration<double, std::milli>(t2 - t0).count();
      times->post = ms_since(t2);
    }
    return dets;
  }
  letterbox_to_planes(image, g, blob_.data());  // image 0; padding images of a fixed batch stay zero
  auto t1 = std::chrono::steady_clock::now();
  const std::vector<int64_t> shape = {batch_, 3, imgsz_h_, imgsz_w_};
  backend_->infer(blob_.data(), shape, outputs_);
  auto t2 = std::chrono::steady_clock::now();
  std::vector<Detection> dets = postprocess(outputs_, layout_, 0, g, post_);
  if (times) {
    times->pre = std::chrono::duration<double, std::milli>(t1 - t0).count();
    times->infer = std::chrono::duration<double, std::milli>(t2 - t1).count();
    times->post = ms_since(t2);
  }
  return dets;
}

}  // namespace drt
