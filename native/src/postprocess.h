// Model outputs -> detections in original-image pixels, with defectrt.runtime.postprocess's contract: raw
// (B, 4 + nc, A) outputs (confidence filter, class-aware NMS, max_det), EfficientNMS_TRT's four outputs and the
// (N, 7) rows of the ONNX NonMaxSuppression export; in-graph NMS results are filtered by conf and capped at max_det.
#pragma once
#include <cstdint>
#include <vector>

#include "backend.h"
#include "letterbox_math.h"

namespace drt {

constexpr size_t kMaxNms = 30000;  // candidates kept for NMS after the confidence filter (as the Python runtime)

struct Detection {
  float x1, y1, x2, y2;
  float score;
  int32_t class_id;
};

struct PostprocessOptions {
  float conf = 0.25f;
  float iou = 0.45f;
  int max_det = 300;
};

enum class OutputLayout { Raw, EfficientNms, Rows };

// The layout told by the outputs' names and shapes; UnsupportedFormat when none fits.
OutputLayout output_layout(const std::vector<TensorInfo>& outputs);

// Detections of image `b` of the batch, best score first, mapped through `g` to original pixels and clipped.
std::vector<Detection> postprocess(const std::vector<HostTensor>& outputs, OutputLayout layout, size_t b,
                                   const lb::Geometry& g, const PostprocessOptions& options);

// Class-aware greedy NMS (cv2.dnn.NMSBoxes semantics on class-shifted boxes, as defectrt.runtime.nms.batched_nms):
// indices of kept boxes, highest score first, at most max_det. boxes: n * 4 doubles x1, y1, x2, y2.
std::vector<size_t> batched_nms(const std::vector<double>& boxes, const std::vector<float>& scores,
                                const std::vector<int64_t>& classes, float iou, size_t max_det);

// Element i of a tensor as double (float32/16, int32/64, uint8, bool).
double tensor_value(const HostTensor& t, size_t i);

}  // namespace drt
