#include "bundle.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "sha256.h"
#include "status.h"
#include "util.h"

namespace drt {

using nlohmann::json;

namespace {
const char* kFormat = "defectrt-bundle";
const char* kManifest = "manifest.json";

bool parse_json(const std::string& text, json* out) {
  try {
    *out = json::parse(text);
    return true;
  } catch (const json::exception&) {
    return false;
  }
}

// A JSON number that is an integer (5 or 5.0) within [lo, hi].
bool as_int(const json& v, long long lo, long long hi, long long* out) {
  if (v.is_number_integer()) {
    long long x = v.is_number_unsigned() ? (v.get<uint64_t>() > uint64_t(hi) ? hi + 1 : (long long)v.get<uint64_t>())
                                         : v.get<long long>();
    if (x < lo || x > hi) return false;
    *out = x;
    return true;
  }
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (!std::isfinite(d) || d != std::floor(d) || d < double(lo) || d > double(hi)) return false;
    *out = static_cast<long long>(d);
    return true;
  }
  if (v.is_string()) {  // Python's int("5") accepts strings of digits
    const std::string& s = v.get_ref<const std::string&>();
    if (s.empty() || s.size() > 18) return false;
    size_t i = (s[0] == '-' || s[0] == '+') ? 1 : 0;
    if (i == s.size()) return false;
    for (size_t k = i; k < s.size(); ++k)
      if (s[k] < '0' || s[k] > '9') return false;
    long long x = std::stoll(s);
    if (x < lo || x > hi) return false;
    *out = x;
    return true;
  }
  return false;
}

std::string name_text(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

std::map<int, std::string> names_from_json(const json& value, const std::string& source) {
  std::map<int, std::string> out;
  if (value.is_array()) {
    if (value.size() > size_t(kMaxClasses))
      throw Error(Status::UnsupportedFormat, source + ": `names` lists " + std::to_string(value.size()) +
                                                 " classes; at most " + std::to_string(kMaxClasses) + " are supported");
    int i = 0;
    for (const json& v : value) out[i++] = name_text(v);
    return out;
  }
  if (!value.is_object()) return out;
  for (auto it = value.begin(); it != value.end(); ++it) {
    json key = it.key();
    long long id = 0;
    if (!as_int(key, std::numeric_limits<long long>::min() / 2, std::numeric_limits<long long>::max() / 2, &id))
      return std::map<int, std::string>();  // Python: a non-integer key makes the whole table unusable -> {}
    if (id < 0 || id >= kMaxClasses)
      throw Error(Status::UnsupportedFormat, source + ": `names` has class id " + it.key() + "; ids must be 0.." +
                                                 std::to_string(kMaxClasses - 1) + " (rebuild the model's metadata)");
    out[static_cast<int>(id)] = name_text(it.value());
  }
  return out;
}

// The Python-literal dict older exporters (and Ultralytics) write: {0: 'scratch', 1: "dent"}. -> JSON object, or
// null when the text is not such a dict (Python's ast.literal_eval fallback, for this one shape).
json python_dict_literal(const std::string& t) {
  size_t i = 0;
  auto ws = [&] {
    while (i < t.size() && (t[i] == ' ' || t[i] == '\t' || t[i] == '\n' || t[i] == '\r')) ++i;
  };
  auto quoted = [&](std::string* out) {
    if (i >= t.size() || (t[i] != '\'' && t[i] != '"')) return false;
    const char q = t[i++];
    while (i < t.size() && t[i] != q) {
      char c = t[i++];
      if (c == '\\' && i < t.size()) {
        c = t[i++];
        c = c == 'n' ? '\n' : c == 't' ? '\t' : c;
      }
      *out += c;
    }
    if (i >= t.size()) return false;
    ++i;
    return true;
  };
  json obj = json::object();
  ws();
  if (i >= t.size() || t[i++] != '{') return json();
  ws();
  if (i < t.size() && t[i] == '}') return obj;
  while (i < t.size()) {
    ws();
    std::string key;
    if (!quoted(&key)) {
      const size_t start = i;
      if (i < t.size() && (t[i] == '-' || t[i] == '+')) ++i;
      while (i < t.size() && t[i] >= '0' && t[i] <= '9') ++i;
      key = t.substr(start, i - start);
      if (key.empty() || key == "-" || key == "+") return json();
    }
    ws();
    if (i >= t.size() || t[i++] != ':') return json();
    ws();
    std::string value;
    if (!quoted(&value)) return json();
    obj[key] = value;
    ws();
    if (i < t.size() && t[i] == ',') {
      ++i;
      ws();
      if (i < t.size() && t[i] == '}') break;
      continue;
    }
    break;
  }
  if (i >= t.size() || t[i] != '}') return json();
  return obj;
}

bool imgsz_from_json(const json& value, int* h, int* w) {
  long long a = 0, b = 0;
  if (value.is_array()) {
    if (value.size() == 1) {
      if (!as_int(value[0], 1, kMaxImgsz, &a)) return false;
      b = a;
    } else if (value.size() == 2) {
      if (!as_int(value[0], 1, kMaxImgsz, &a) || !as_int(value[1], 1, kMaxImgsz, &b)) return false;
    } else {
      return false;
    }
  } else if (value.is_number()) {
    if (!as_int(value, 1, kMaxImgsz, &a)) return false;
    b = a;
  } else {
    return false;
  }
  *h = static_cast<int>(a);
  *w = static_cast<int>(b);
  return true;
}
}  // namespace

std::map<int, std::string> parse_names(const std::string& text, const std::string& source) {
  if (text.empty()) return {};
  json v;
  if (!parse_json(text, &v)) {
    v = python_dict_literal(text);
    if (v.is_null()) return {};
  }
  return names_from_json(v, source);
}

bool parse_imgsz(const std::string& text, int* h, int* w) {
  json v;
  if (text.empty() || !parse_json(text, &v)) return false;
  return imgsz_from_json(v, h, w);
}

bool safe_relative_path(const std::string& rel) {
  if (rel.empty() || rel.size() > 1024 || rel[0] == '/') return false;
  if (rel.find('\\') != std::string::npos || rel.find(':') != std::string::npos) return false;
  if (rel.find('\0') != std::string::npos) return false;
  size_t start = 0;
  while (true) {
    size_t end = rel.find('/', start);
    std::string part = rel.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (part.empty() || part == "." || part == "..") return false;
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return true;
}

bool is_bundle(const std::string& folder) {
  return is_directory(folder) && is_regular_file(join_path(folder, kManifest));
}

Bundle read_bundle(const std::string& folder, bool verify) {
  const std::string path = join_path(folder, kManifest);
  if (!is_directory(folder)) throw Error(Status::NotFound, folder + ": no such bundle folder");
  if (!is_regular_file(path))
    throw Error(Status::UnsupportedFormat, folder + ": a folder but not a defectrt bundle (no manifest.json); give an "
                                                    ".onnx file, an engine or a bundle folder");
  json m;
  if (!parse_json(read_file(path, kMaxManifestBytes), &m))
    throw Error(Status::UnsupportedFormat, path + ": not valid JSON; rebuild the bundle");
  if (!m.is_object() || !m.contains("format") || m["format"] != kFormat)
    throw Error(Status::UnsupportedFormat, path + ": format is not \"defectrt-bundle\"; rebuild the bundle");
  const json files = m.value("files", json());
  if (!files.is_object() || files.empty())
    throw Error(Status::UnsupportedFormat, path + ": no `files` hashes; rebuild the bundle with `defectrt export build`");
  for (auto it = files.begin(); it != files.end(); ++it) {
    if (!safe_relative_path(it.key()))
      throw Error(Status::UnsupportedFormat, path + ": file \"" + it.key() + "\" is not a relative path inside the "
                                                    "bundle; rebuild the bundle");
    if (!it.value().is_string() || it.value().get_ref<const std::string&>().size() != 64)
      throw Error(Status::UnsupportedFormat, path + ": the sha256 of " + it.key() + " is not a 64-digit hex string");
  }
  Bundle b;
  b.folder = folder;
  const json model = m.value("model", json("model.onnx"));
  if (!model.is_string() || !files.contains(model.get<std::string>()))
    throw Error(Status::UnsupportedFormat, path + ": the model file " + model.dump() + " is not listed in `files`; "
                                                  "rebuild the bundle");
  b.model_path = join_path(folder, model.get<std::string>());
  const json engine = m.value("engine", json());
  if (engine.is_object() && engine.contains("file") && !engine["file"].is_null()) {
    const json& f = engine["file"];
    if (!f.is_string() || !files.contains(f.get<std::string>()))
      throw Error(Status::UnsupportedFormat, path + ": the engine " + f.dump() + " is not listed in `files`; run "
                                                    "defectrt export build " + folder + " --engine --force");
    b.engine_path = join_path(folder, f.get<std::string>());
  }
  if (verify) {
    for (auto it = files.begin(); it != files.end(); ++it) {
      const std::string full = join_path(folder, it.key());
      if (!is_regular_file(full))
        throw Error(Status::NotFound, "bundle " + folder + ": " + it.key() + " is listed in manifest.json but missing; "
                                      "copy the whole bundle folder again or rebuild it");
      if (sha256_file(full) != lower(it.value().get<std::string>()))
        throw Error(Status::UnsupportedFormat, "bundle " + folder + ": " + it.key() + " does not match its sha256 in "
                                               "manifest.json (changed or corrupted in transfer); copy the bundle "
                                               "again or rebuild it");
    }
  }
  if (m.contains("names")) {
    const json& n = m["names"];
    b.names = n.is_string() ? parse_names(n.get<std::string>(), path) : names_from_json(n, path);
  }
  if (m.contains("imgsz") && !m["imgsz"].is_null()) {
    const json& v = m["imgsz"];
    bool ok = v.is_string() ? parse_imgsz(v.get<std::string>(), &b.imgsz_h, &b.imgsz_w)
                            : imgsz_from_json(v, &b.imgsz_h, &b.imgsz_w);
    if (!ok)
      throw Error(Status::UnsupportedFormat, path + ": imgsz " + v.dump() + " is not a size of 1.." +
                                                 std::to_string(kMaxImgsz) + " pixels; rebuild the bundle");
    b.has_imgsz = true;
  }
  const json t = m.value("thresholds", json());
  if (t.is_object()) {
    auto unit = [&](const char* key, bool* has, float* out) {
      if (!t.contains(key) || t[key].is_null()) return;
      if (!t[key].is_number() || !(t[key].get<double>() >= 0.0 && t[key].get<double>() <= 1.0))
        throw Error(Status::UnsupportedFormat, path + ": thresholds." + key + " " + t[key].dump() +
                                                   " is not a number in 0..1; rebuild the bundle");
      *has = true;
      *out = static_cast<float>(t[key].get<double>());
    };
    unit("conf", &b.thresholds.has_conf, &b.thresholds.conf);
    unit("iou", &b.thresholds.has_iou, &b.thresholds.iou);
    if (t.contains("max_det") && !t["max_det"].is_null()) {
      long long md = 0;
      if (!as_int(t["max_det"], 1, 1 << 30, &md))
        throw Error(Status::UnsupportedFormat, path + ": thresholds.max_det " + t["max_det"].dump() +
                                                   " is not an integer >= 1; rebuild the bundle");
      b.thresholds.has_max_det = true;
      b.thresholds.max_det = static_cast<int>(md);
    }
  }
  return b;
}

}  // namespace drt
