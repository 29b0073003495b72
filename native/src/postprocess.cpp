#include "postprocess.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>

#include "status.h"
#include "util.h"

namespace drt {

namespace {
const char* kEfficient[4] = {"num_dets", "det_boxes", "det_scores", "det_classes"};

float half_to_float(uint16_t h) {
  const uint32_t sign = (h >> 15) & 1u, exp = (h >> 10) & 0x1Fu, mant = h & 0x3FFu;
  float v;
  if (exp == 0) v = std::ldexp(static_cast<float>(mant), -24);
  else if (exp == 31) v = mant ? NAN : INFINITY;
  else v = std::ldexp(static_cast<float>(mant | 0x400u), static_cast<int>(exp) - 25);
  return sign ? -v : v;
}

size_t dtype_size(DType d) {
  switch (d) {
    case DType::Float32: case DType::Int32: return 4;
    case DType::Float16: return 2;
    case DType::Int64: return 8;
    default: return 1;
  }
}

void check_size(const HostTensor& t, size_t need, const char* what) {
  size_t n = element_count(t.shape, what);
  if (n < need || t.data.size() < checked_mul(n, dtype_size(t.dtype), what))
    throw Error(Status::RuntimeFailure, std::string("model output ") + t.name + " is smaller than its shape says (" +
                                            what + ")");
}

int find(const std::vector<TensorInfo>& outs, const char* name) {
  for (size_t i = 0; i < outs.size(); ++i)
    if (outs[i].name == name) return static_cast<int>(i);
  return -1;
}

// Box of a detection, input pixels (double) -> original pixels (float32), as LetterboxInfo.to_original.
Detection to_original(const double* box, float score, int64_t cls, const lb::Geometry& g) {
  const double sx = static_cast<double>(g.new_w) / g.src_w, sy = static_cast<double>(g.new_h) / g.src_h;
  double v[4] = {(box[0] - g.pad_left) / sx, (box[1] - g.pad_top) / sy, (box[2] - g.pad_left) / sx,
                 (box[3] - g.pad_top) / sy};
  for (int k = 0; k < 4; ++k) {
    const double hi = (k % 2 == 0) ? g.src_w : g.src_h;
    if (v[k] < 0) v[k] = 0;  // np.clip keeps NaN; so does this
    if (v[k] > hi) v[k] = hi;
  }
  Detection d;
  d.x1 = static_cast<float>(v[0]);
  d.y1 = static_cast<float>(v[1]);
  d.x2 = static_cast<float>(v[2]);
  d.y2 = static_cast<float>(v[3]);
  d.score = score;
  d.class_id = cls > INT32_MAX ? INT32_MAX : (cls < INT32_MIN ? INT32_MIN : static_cast<int32_t>(cls));
  return d;
}

// Shared tail of the in-graph NMS layouts: conf filter, best-first stable order, max_det.
std::vector<Detection> filter(const std::vector<double>& boxes, const std::vector<float>& scores,
                              const std::vector<int64_t>& cls, const lb::Geometry& g, const PostprocessOptions& o) {
  std::vector<size_t> keep;
  for (size_t i = 0; i < scores.size(); ++i)
    if (scores[i] > o.conf) keep.push_back(i);
  std::stable_sort(keep.begin(), keep.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  if (keep.size() > static_cast<size_t>(o.max_det)) keep.resize(static_cast<size_t>(o.max_det));
  std::vector<Detection> out;
  out.reserve(keep.size());
  for (size_t i : keep) out.push_back(to_original(&boxes[4 * i], scores[i], cls[i], g));
  return out;
}

std::vector<Detection> decode_raw(const HostTensor& t, size_t b, const lb::Geometry& g, const PostprocessOptions& o) {
  if (t.shape.size() != 3)
    throw Error(Status::UnsupportedFormat, "model output " + t.name + " has rank " + std::to_string(t.shape.size()) +
                                               "; expected (B, 4 + nc, A)");
  const size_t rows = static_cast<size_t>(t.shape[1]), anchors = static_cast<size_t>(t.shape[2]);
  if (rows < 5)
    throw Error(Status::UnsupportedFormat, "model output has " + std::to_string(rows) +
                                               " rows; expected 4 box rows plus at least one class");
  if (b >= static_cast<size_t>(t.shape[0]))
    throw Error(Status::RuntimeFailure, "model returned " + std::to_string(t.shape[0]) + " images for batch index " +
                                            std::to_string(b));
  check_size(t, 1, "raw output");
  const size_t nc = rows - 4;
  const size_t base = checked_mul(b, checked_mul(rows, anchors, "raw output"), "raw output");
  std::vector<float> plane;  // float32 view of this image's (rows, anchors)
  const float* p;
  if (t.dtype == DType::Float32) {
    p = reinterpret_cast<const float*>(t.data.data()) + base;
  } else {
    plane.resize(rows * anchors);
    for (size_t i = 0; i < plane.size(); ++i) plane[i] = static_cast<float>(tensor_value(t, base + i));
    p = plane.data();
  }
  std::vector<size_t> cand;
  std::vector<float> best_of;
  std::vector<int64_t> cls_of;
  for (size_t a = 0; a < anchors; ++a) {
    float best = p[4 * anchors + a];
    size_t arg = 0;
    for (size_t c = 1; c < nc; ++c) {
      const float s = p[(4 + c) * anchors + a];
      if (s > best) {  // first maximum, as numpy's argmax (NaN never wins here; numpy's max would give NaN)
        best = s;
        arg = c;
      }
    }
    if (best > o.conf) {
      cand.push_back(a);
      best_of.push_back(best);
      cls_of.push_back(static_cast<int64_t>(arg));
    }
  }
  std::vector<size_t> order(cand.size());
  std::iota(order.begin(), order.end(), size_t(0));
  if (cand.size() > kMaxNms) {
    std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return best_of[x] > best_of[y]; });
    order.resize(kMaxNms);
  }
  std::vector<double> boxes(order.size() * 4);
  std::vector<float> scores(order.size());
  std::vector<int64_t> cls(order.size());
  for (size_t k = 0; k < order.size(); ++k) {
    const size_t a = cand[order[k]];
    const double cx = p[a], cy = p[anchors + a], w = p[2 * anchors + a], h = p[3 * anchors + a];
    boxes[4 * k] = cx - w / 2;
    boxes[4 * k + 1] = cy - h / 2;
    boxes[4 * k + 2] = cx + w / 2;
    boxes[4 * k + 3] = cy + h / 2;
    scores[k] = best_of[order[k]];
    cls[k] = cls_of[order[k]];
  }
  std::vector<size_t> keep = batched_nms(boxes, scores, cls, o.iou, static_cast<size_t>(o.max_det));
  std::vector<Detection> out;
  out.reserve(keep.size());
  for (size_t i : keep) out.push_back(to_original(&boxes[4 * i], scores[i], cls[i], g));
  return out;
}

std::vector<Detection> decode_efficient(const std::vector<HostTensor>& outs, size_t b, const lb::Geometry& g,
                                        const PostprocessOptions& o) {
  const HostTensor& num = outs[0];
  const HostTensor& boxes = outs[1];
  const HostTensor& scores = outs[2];
  const HostTensor& classes = outs[3];
  if (boxes.shape.size() != 3 || boxes.shape[2] != 4 || scores.shape.size() < 2 || classes.shape.size() < 2 ||
      num.shape.empty())
    throw Error(Status::UnsupportedFormat, "EfficientNMS outputs have unexpected shapes; expected num_dets (B, 1), "
                                           "det_boxes (B, K, 4), det_scores (B, K), det_classes (B, K)");
  const size_t batch = static_cast<size_t>(boxes.shape[0]), k = static_cast<size_t>(boxes.shape[1]);
  if (b >= batch || b >= static_cast<size_t>(num.shape[0]) || static_cast<size_t>(scores.shape[0]) != batch ||
      static_cast<size_t>(classes.shape[0]) != batch || static_cast<size_t>(scores.shape[1]) != k ||
      static_cast<size_t>(classes.shape[1]) != k)
    throw Error(Status::UnsupportedFormat, "EfficientNMS outputs disagree in batch or detection count");
  check_size(boxes, batch * k * 4, "det_boxes");
  check_size(scores, batch * k, "det_scores");
  check_size(classes, batch * k, "det_classes");
  const size_t num_stride = element_count(num.shape, "num_dets") / static_cast<size_t>(num.shape[0]);
  check_size(num, (b + 1) * num_stride, "num_dets");
  double nd = tensor_value(num, b * num_stride);
  size_t n = !(nd > 0) ? 0 : (nd >= static_cast<double>(k) ? k : static_cast<size_t>(nd));
  std::vector<double> bx(n * 4);
  std::vector<float> sc(n);
  std::vector<int64_t> cl(n);
  for (size_t i = 0; i < n; ++i) {
    for (int j = 0; j < 4; ++j) bx[4 * i + j] = tensor_value(boxes, (b * k + i) * 4 + j);
    sc[i] = static_cast<float>(tensor_value(scores, b * k + i));
    cl[i] = static_cast<int64_t>(tensor_value(classes, b * k + i));
  }
  return filter(bx, sc, cl, g, o);
}

std::vector<Detection> decode_rows(const HostTensor& t, size_t b, const lb::Geometry& g, const PostprocessOptions& o) {
  const size_t total = element_count(t.shape, "detections");
  if (total % 7 != 0)
    throw Error(Status::UnsupportedFormat, "model output detections has shape with " + std::to_string(total) +
                                               " values; expected (N, 7) rows");
  check_size(t, total, "detections");
  std::vector<double> bx;
  std::vector<float> sc;
  std::vector<int64_t> cl;
  for (size_t r = 0; r < total / 7; ++r) {
    const double bid = tensor_value(t, r * 7);
    if (!(std::trunc(bid) == static_cast<double>(b))) continue;  // astype(int64) truncates
    for (int j = 1; j <= 4; ++j) bx.push_back(tensor_value(t, r * 7 + j));
    sc.push_back(static_cast<float>(tensor_value(t, r * 7 + 5)));
    const double c = tensor_value(t, r * 7 + 6);
    cl.push_back(std::isfinite(c) && std::fabs(c) < 9e18 ? static_cast<int64_t>(c) : -1);
  }
  return filter(bx, sc, cl, g, o);
}
}  // namespace

double tensor_value(const HostTensor& t, size_t i) {
  const unsigned char* p = t.data.data();
  switch (t.dtype) {
    case DType::Float32: { float v; std::memcpy(&v, p + 4 * i, 4); return v; }
    case DType::Float16: { uint16_t v; std::memcpy(&v, p + 2 * i, 2); return half_to_float(v); }
    case DType::Int32: { int32_t v; std::memcpy(&v, p + 4 * i, 4); return v; }
    case DType::Int64: { int64_t v; std::memcpy(&v, p + 8 * i, 8); return static_cast<double>(v); }
    case DType::Uint8: case DType::Bool: return p[i];
  }
  return 0;
}

OutputLayout output_layout(const std::vector<TensorInfo>& outs) {
  bool efficient = true;
  for (const char* n : kEfficient) efficient = efficient && find(outs, n) >= 0;
  if (efficient) return OutputLayout::EfficientNms;
  if (find(outs, "detections") >= 0) return OutputLayout::Rows;
  if (find(outs, "output0") >= 0) return OutputLayout::Raw;
  if (outs.size() == 1) {
    if (outs[0].shape.size() == 3) return OutputLayout::Raw;
    if (outs[0].shape.size() == 2 && outs[0].shape[1] == 7) return OutputLayout::Rows;
  }
  if (outs.size() == 4) return OutputLayout::EfficientNms;
  std::string names;
  for (const TensorInfo& t : outs) names += (names.empty() ? "" : ", ") + t.name;
  throw Error(Status::UnsupportedFormat, "model outputs [" + names + "] are none of the known layouts (output0; "
                                         "num_dets/det_boxes/det_scores/det_classes; detections)");
}

std::vector<Detection> postprocess(const std::vector<HostTensor>& outs, OutputLayout layout, size_t b,
                                   const lb::Geometry& g, const PostprocessOptions& o) {
  auto by_name = [&](const char* name) -> const HostTensor* {
    for (const HostTensor& t : outs)
      if (t.name == name) return &t;
    return nullptr;
  };
  switch (layout) {
    case OutputLayout::Raw: {
      const HostTensor* t = by_name("output0");
      if (t == nullptr) t = &outs.at(0);
      return decode_raw(*t, b, g, o);
    }
    case OutputLayout::Rows: {
      const HostTensor* t = by_name("detections");
      if (t == nullptr) t = &outs.at(0);
      return decode_rows(*t, b, g, o);
    }
    case OutputLayout::EfficientNms: {
      std::vector<HostTensor> four;
      bool named = true;
      for (const char* n : kEfficient) named = named && by_name(n) != nullptr;
      if (named) {
        std::vector<HostTensor> ordered;
        for (const char* n : kEfficient) ordered.push_back(*by_name(n));
        return decode_efficient(ordered, b, g, o);
      }
      if (outs.size() != 4) throw Error(Status::UnsupportedFormat, "EfficientNMS layout needs four outputs");
      return decode_efficient(outs, b, g, o);
    }
  }
  throw Error(Status::Internal, "unknown output layout");
}

std::vector<size_t> batched_nms(const std::vector<double>& boxes, const std::vector<float>& scores,
                                const std::vector<int64_t>& classes, float iou, size_t max_det) {
  const size_t n = scores.size();
  std::vector<size_t> keep;
  if (n == 0) return keep;
  // Shift every class into its own region (offset = class * (coordinate span + 1)), as the Python runtime.
  double lo = boxes[0], hi = boxes[0];
  for (double v : boxes) {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  const double span = (hi - lo) + 1.0;
  // cv2.dnn.NMSBoxes on Rect2d(x1, y1, x2 - x1, y2 - y1): candidates with score > 0 in descending score order
  // (stable), a box is kept when its overlap with every kept box is <= the threshold; overlap is
  // 1 - float(jaccard distance), intersection from x + width.
  std::vector<double> x(n), y(n), w(n), h(n);
  for (size_t i = 0; i < n; ++i) {
    const double off = static_cast<double>(classes[i]) * span;
    x[i] = boxes[4 * i] + off;
    y[i] = boxes[4 * i + 1] + off;
    w[i] = (boxes[4 * i + 2] + off) - x[i];
    h[i] = (boxes[4 * i + 3] + off) - y[i];
  }
  std::vector<size_t> order;
  for (size_t i = 0; i < n; ++i)
    if (scores[i] > 0.f) order.push_back(i);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  for (size_t i : order) {
    if (keep.size() >= max_det) break;
    bool ok = true;
    for (size_t k : keep) {
      const double ix = std::max(x[i], x[k]), iy = std::max(y[i], y[k]);
      const double iw = std::min(x[i] + w[i], x[k] + w[k]) - ix, ih = std::min(y[i] + h[i], y[k] + h[k]) - iy;
      const double inter = (iw <= 0 || ih <= 0) ? 0.0 : iw * ih;
      const double aa = w[i] * h[i], ab = w[k] * h[k];
      double dist;
      if (aa + ab <= std::numeric_limits<double>::epsilon()) dist = 0.0;
      else dist = 1.0 - inter / (aa + ab - inter);
      const float overlap = 1.f - static_cast<float>(dist);
      if (!(overlap <= iou)) {
        ok = false;
        break;
      }
    }
    if (ok) keep.push_back(i);
  }
  return keep;
}

}  // namespace drt
