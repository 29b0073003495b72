// Model metadata (class names, input size) and deployment bundles (manifest.json), with the Python runtime's
// contract (defectrt/runtime/bundle.py, modelinfo.py) and bounds on everything read from a file.
#pragma once
#include <cstdint>
#include <map>
#include <string>

namespace drt {

constexpr int kMaxClasses = 65536;      // class ids 0 .. kMaxClasses-1
constexpr int kMaxImgsz = 16384;        // model input side
constexpr size_t kMaxManifestBytes = 4u << 20;

// `names` metadata (JSON object {"0": "scratch"} or list) -> {id: name}. Malformed values give {} (as Python);
// ids outside 0 .. kMaxClasses-1 are an UnsupportedFormat error naming `source`.
std::map<int, std::string> parse_names(const std::string& text, const std::string& source);
// `imgsz` metadata (JSON int, [s] or [h, w]) -> true and (h, w) when valid and within kMaxImgsz.
bool parse_imgsz(const std::string& text, int* h, int* w);

struct Thresholds {
  bool has_conf = false, has_iou = false, has_max_det = false;
  float conf = 0.f, iou = 0.f;
  int max_det = 0;
};

struct Bundle {
  std::string folder;
  std::string model_path;   // absolute or as given: folder + "/" + manifest model
  std::string engine_path;  // empty when the bundle has no engine
  std::map<int, std::string> names;
  bool has_imgsz = false;
  int imgsz_h = 0, imgsz_w = 0;
  Thresholds thresholds;
};

bool is_bundle(const std::string& folder);
// Reads and checks manifest.json: format, `files` (relative paths inside the bundle, each file's sha256 when
// verify), model / engine listed, names / imgsz / thresholds in range. Throws drt::Error naming the file.
Bundle read_bundle(const std::string& folder, bool verify = true);
// A path from a manifest: relative, '/'-separated, no '..', '.', empty part, drive or backslash.
bool safe_relative_path(const std::string& rel);

}  // namespace drt
