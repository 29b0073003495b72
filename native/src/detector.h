// drt::Detector: the Python Detector's contract in C++ (defectrt/runtime/detector.py): a model file or bundle in,
// detections in original pixels out, thresholds from the options or the bundle.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend.h"
#include "postprocess.h"
#include "preprocess.h"

namespace drt {

struct DetectorOptions {
  std::string backend = "auto";  // "auto" | "onnxruntime" | "tensorrt"
  float conf = -1.f;             // < 0: the bundle's, else 0.25
  float iou = -1.f;              // < 0: the bundle's, else 0.45
  int max_det = 0;               // 0: the bundle's, else 300
  int threads = 0;               // 0: ONNX Runtime's default
};

struct StageTimes {  // milliseconds of the last detect()
  double pre = 0, infer = 0, post = 0;
};

class Detector {
 public:
  Detector(const std::string& model_path, const DetectorOptions& options);
  // Detections of one image, best score first.
  std::vector<Detection> detect(const ImageView& image, StageTimes* times = nullptr);
  // Names indexed by class id: 0 .. max id (gaps named by their id, as the former C ABI).
  const std::vector<std::string>& class_names() const { return class_names_; }
  const std::string& backend_name() const { return backend_name_; }
  const std::string& backend_reason() const { return reason_; }
  int input_height() const { return imgsz_h_; }
  int input_width() const { return imgsz_w_; }
  const PostprocessOptions& thresholds() const { return post_; }
  Backend& backend() { return *backend_; }
  // The model input of the last detect() (float32 NCHW) and its shape: lets a benchmark run the backend alone on
  // exactly the same input.
  const std::vector<float>& input_blob() const { return blob_; }
  std::vector<int64_t> input_shape() const { return {batch_, 3, imgsz_h_, imgsz_w_}; }

 private:
  std::unique_ptr<Backend> backend_;
  std::string backend_name_, reason_;
  int imgsz_h_ = 0, imgsz_w_ = 0, batch_ = 1;
  OutputLayout layout_ = OutputLayout::Raw;
  PostprocessOptions post_;
  std::vector<std::string> class_names_;
  std::vector<float> blob_;
  std::vector<HostTensor> outputs_;
};

}  // namespace drt
