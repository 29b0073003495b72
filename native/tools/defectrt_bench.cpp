// defectrt_bench: time a model end to end on the device with the native runtime (no Python) and write the same
// JSON report as `defectrt bench` (schema "defectrt-bench-report" v1, src/defectrt/bench/report.py), so that
// `defectrt bench merge` takes reports from Jetsons without Python.
//
//   defectrt_bench MODEL [--image FILE.ppm|pgm]... [--synthetic WxH] [--warmup N] [--iters N] [--threads N]
//                  [--backend auto|onnxruntime|tensorrt] [--label TEXT] [--bare-run] [-o REPORT.json]
//
// --bare-run: after each end-to-end call, time the backend's infer alone on the very same input blob (for ONNX
// Runtime: wrap the buffer, the C API Run, copy the outputs); the result gets "bare_run" statistics and
// "end_to_end_over_bare_run", the median of the per-iteration ratios (the native pre/post-processing overhead).
//
// Stages: preprocess (letterbox + normalise), compute (the backend's synchronous infer: host-timed), postprocess
// (decode + NMS), end_to_end (the three); statistics as trtexec defines them (nearest-rank percentiles, population
// standard deviation).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#if defined(_WIN32)
#include "windows_api.h"
#include <shellapi.h>  // CommandLineToArgvW
#else
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>
#endif

#include "detector.h"
#include "status.h"
#include "util.h"

#ifndef DRT_PACKAGE_VERSION
#define DRT_PACKAGE_VERSION "0.0.0+unknown"
#endif

using nlohmann::json;

namespace {

struct Image {
  int width = 0, height = 0, channels = 3;
  std::vector<uint8_t> pixels;  // BGR or gray
};

int usage(const char* msg) {
  std::fprintf(stderr,
               "%s\nusage: defectrt_bench MODEL [--image FILE.ppm|.pgm]... [--synthetic WxH] [--warmup N] "
               "[--iters N] [--threads N] [--backend auto|onnxruntime|tensorrt] [--label TEXT] [--bare-run] "
               "[-o REPORT.json]\n",
               msg);
  return 2;
}

// Binary PPM (P6, RGB) / PGM (P5): the formats every camera SDK can write without a codec library.
Image read_pnm(const std::string& path) {
  std::string data = drt::read_file(path, size_t(1) << 31);
  std::istringstream in(data);
  std::string magic;
  in >> magic;
  if (magic != "P6" && magic != "P5")
    throw drt::Error(drt::Status::UnsupportedFormat, path + ": not a binary PPM (P6) or PGM (P5) image");
  auto next_int = [&]() {
    while (true) {
      in >> std::ws;
      if (in.peek() == '#') {
        std::string line;
        std::getline(in, line);
        continue;
      }
      long v = -1;
      in >> v;
      return v;
    }
  };
  long w = next_int(), h = next_int(), maxv = next_int();
  if (w <= 0 || h <= 0 || w > 65535 || h > 65535 || maxv != 255)
    throw drt::Error(drt::Status::UnsupportedFormat, path + ": unsupported size or depth (8-bit PPM/PGM only)");
  in.get();
  Image im;
  im.width = static_cast<int>(w);
  im.height = static_cast<int>(h);
  im.channels = magic == "P6" ? 3 : 1;
  const size_t n = drt::checked_mul(drt::checked_mul(size_t(w), size_t(h), path.c_str()), size_t(im.channels),
                                    path.c_str());
  const size_t off = static_cast<size_t>(in.tellg());
  if (data.size() < off || data.size() - off < n) throw drt::Error(drt::Status::UnsupportedFormat, path + ": truncated");
  im.pixels.assign(data.begin() + static_cast<std::ptrdiff_t>(off), data.begin() + static_cast<std::ptrdiff_t>(off + n));
  if (im.channels == 3)
    for (size_t i = 0; i < n; i += 3) std::swap(im.pixels[i], im.pixels[i + 2]);  // RGB -> BGR
  return im;
}

Image synthetic(int w, int h) {
  Image im;
  im.width = w;
  im.height = h;
  im.pixels.resize(size_t(w) * size_t(h) * 3);
  std::mt19937 rng(0);
  for (uint8_t& p : im.pixels) p = static_cast<uint8_t>(rng() & 0xFF);
  return im;
}

// stats.summarize(): trtexec's definitions.
json summarize(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  double sum = 0;
  for (double x : v) sum += x;
  const double mean = sum / static_cast<double>(n);
  double var = 0;
  for (double x : v) var += (x - mean) * (x - mean);
  var /= static_cast<double>(n);
  const double sd = std::sqrt(var);
  auto pct = [&](int p) {
    size_t rank = (static_cast<size_t>(p) * n + 99) / 100;  // ceil(p * n / 100), exact in integers
    return v[rank > 0 ? rank - 1 : 0];
  };
  json s;
  s["count"] = n;
  s["min"] = v.front();
  s["mean"] = mean;
  s["median"] = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
  s["p90"] = pct(90);
  s["p95"] = pct(95);
  s["p99"] = pct(99);
  s["max"] = v.back();
  s["std"] = sd;
  s["cov"] = mean > 0 ? sd / mean : 0.0;
  return s;
}

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.compare(0, 10, "model name") == 0 || line.compare(0, 5, "Model") == 0) {
      size_t c = line.find(':');
      if (c != std::string::npos) return line.substr(line.find_first_not_of(" \t", c + 1));
    }
  }
  return "unknown";
}

json environment() {
  json env;
  json cpu;
  cpu["model"] = cpu_model();
  cpu["logical_cores"] = std::thread::hardware_concurrency();
  env["cpu"] = cpu;
#if !defined(_WIN32)
  struct utsname u;
  if (uname(&u) == 0) {
    env["os"] = {{"system", u.sysname}, {"release", u.release}, {"machine", u.machine}};
    env["hostname"] = u.nodename;
  }
  std::ifstream model("/proc/device-tree/model");
  std::string m;
  std::getline(model, m, '\0');
  const bool jetson = m.find("Jetson") != std::string::npos || m.find("NVIDIA") != std::string::npos;
  env["jetson"] = {{"is_jetson", jetson}, {"model", jetson ? m : "unknown"}};
#else
  env["os"] = {{"system", "Windows"}};
#endif
  env["runtime"] = {{"tool", "defectrt_bench (native)"}, {"python", nullptr}};
  env["gpu"] = json::array();
  return env;
}

long peak_rss_bytes() {
#if !defined(_WIN32)
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) == 0) return ru.ru_maxrss * 1024L;
#endif
  return -1;
}

// The arguments as UTF-8, the encoding the library takes paths in. On Windows argv is in the ANSI code page, so
// the wide command line is converted instead (non-ASCII image / model / report paths would fail otherwise).
std::vector<std::string> utf8_args(int argc, char** argv) {
#if defined(_WIN32)
  int n = 0;
  LPWSTR* w = CommandLineToArgvW(GetCommandLineW(), &n);
  if (w != nullptr && n == argc) {
    std::vector<std::string> out;
    for (int i = 0; i < n; ++i) {
      const int bytes = WideCharToMultiByte(CP_UTF8, 0, w[i], -1, nullptr, 0, nullptr, nullptr);
      std::string a(bytes > 0 ? static_cast<size_t>(bytes) : 1, '\0');
      if (bytes > 0) WideCharToMultiByte(CP_UTF8, 0, w[i], -1, &a[0], bytes, nullptr, nullptr);
      a.resize(a.size() - 1);  // the terminating NUL
      out.push_back(a);
    }
    LocalFree(w);
    return out;
  }
  if (w != nullptr) LocalFree(w);
#endif
  return std::vector<std::string>(argv, argv + argc);
}

// "WxH" -> w, h (1..16384 each).
bool parse_size(const std::string& v, int* w, int* h) {
  const size_t x = v.find('x');
  if (x == std::string::npos || x == 0 || x + 1 >= v.size()) return false;
  try {
    size_t used_w = 0, used_h = 0;
    *w = std::stoi(v.substr(0, x), &used_w);
    *h = std::stoi(v.substr(x + 1), &used_h);
    return used_w == x && used_h == v.size() - x - 1 && *w >= 1 && *h >= 1 && *w <= 16384 && *h <= 16384;
  } catch (const std::exception&) {
    return false;
  }
}

// UTC "YYYY-MM-DDTHH:MM:SSZ" (gmtime_s / gmtime_r: std::gmtime is not thread-safe and MSVC deprecates it, C4996).
std::string utc_stamp() {
  std::time_t now = std::time(nullptr);
  std::tm t{};
#if defined(_WIN32)
  gmtime_s(&t, &now);
#else
  gmtime_r(&now, &t);
#endif
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &t);
  return stamp;
}

// Atomic replace of `to` by `from` (std::rename fails on Windows when `to` exists).
bool replace_file(const std::string& from, const std::string& to) {
#if defined(_WIN32)
  return MoveFileExW(drt::widen(from).c_str(), drt::widen(to).c_str(),
                     MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH) != 0;
#else
  return std::rename(from.c_str(), to.c_str()) == 0;
#endif
}

std::string basename_of(const std::string& p) {
  size_t s = p.find_last_of("/\\");
  std::string b = s == std::string::npos ? p : p.substr(s + 1);
  if (b.empty() && s != std::string::npos) return basename_of(p.substr(0, s));
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage("missing MODEL");
  const std::vector<std::string> args = utf8_args(argc, argv);
  std::string model = args[1], out_path, label;
  std::vector<std::string> image_paths;
  int warmup = 10, iters = 100, syn_w = 1280, syn_h = 720;
  bool bare = false;
  drt::DetectorOptions opts;
  std::vector<std::string> command = args;
  for (int i = 2; i < argc; ++i) {
    std::string a = args[static_cast<size_t>(i)];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw drt::Error(drt::Status::InvalidArgument, a + " needs a value");
      return args[static_cast<size_t>(++i)];
    };
    try {
      if (a == "--image") image_paths.push_back(value());
      else if (a == "--synthetic") {
        std::string v = value();
        if (!parse_size(v, &syn_w, &syn_h))
          return usage("--synthetic takes WxH, e.g. 1280x720");
      } else if (a == "--warmup") warmup = std::stoi(value());
      else if (a == "--iters") iters = std::stoi(value());
      else if (a == "--threads") opts.threads = std::stoi(value());
      else if (a == "--backend") opts.backend = value();
      else if (a == "--label") label = value();
      else if (a == "--bare-run") bare = true;
      else if (a == "-o" || a == "--output") out_path = value();
      else return usage(("unknown argument " + a).c_str());
    } catch (const std::exception& e) {
      return usage(e.what());
    }
  }
  if (iters < 1 || warmup < 0 || iters > 10000000) return usage("--iters must be >= 1 and --warmup >= 0");

  json report;
  report["schema"] = "defectrt-bench-report";
  report["schema_version"] = 1;
  report["created_utc"] = utc_stamp();
  report["defectrt_version"] = DRT_PACKAGE_VERSION;
  report["command"] = command;
  json env = environment();
  std::string host = env.value("hostname", std::string("host"));
  report["machine"] = {{"label", label.empty() ? env["cpu"]["model"].get<std::string>() + " [" + host + "]" : label},
                       {"peak_gflops", nullptr}};
  report["environment"] = env;
  report["settings"] = {{"warmup_s", nullptr}, {"warmup_iters", warmup}, {"duration_s", nullptr},
                        {"iters", iters}, {"min_iters", iters}, {"threads", opts.threads},
                        {"mode", "end_to_end"}, {"cuda_graph", false}};
  json result;
  result["model"] = basename_of(model);
  result["source"] = model;
  result["mode"] = "end_to_end";
  result["batch"] = 1;
  result["warnings"] = json::array();
  result["notes"] = json::array({"measured by the native defectrt_bench (C++ runtime, no Python)"});
  int rc = 0;
  try {
    std::vector<Image> images;
    for (const std::string& p : image_paths) images.push_back(read_pnm(p));
    if (images.empty()) images.push_back(synthetic(syn_w, syn_h));
    auto t_load = std::chrono::steady_clock::now();
    drt::Detector det(model, opts);
    const double load_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_load).count();
    result["backend"] = det.backend_name();
    result["backend_reason"] = det.backend_reason();
    result["imgsz"] = {det.input_height(), det.input_width()};
    result["precision"] = "unknown";
    std::vector<drt::ImageView> views;
    for (const Image& im : images)
      views.push_back(drt::make_image_view(im.pixels.data(), im.width, im.height, 0,
                                           im.channels == 1 ? drt::lb::GRAY8 : drt::lb::BGR8));
    drt::StageTimes st;
    auto t_first = std::chrono::steady_clock::now();
    det.detect(views[0], &st);
    const double first_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_first).count();
    auto w0 = std::chrono::steady_clock::now();
    for (int i = 0; i < warmup; ++i) det.detect(views[static_cast<size_t>(i) % views.size()], &st);
    const double warm_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
    std::vector<double> pre, inf, post, e2e, bare_ms;
    std::vector<drt::HostTensor> bare_out;
    auto wall0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      det.detect(views[static_cast<size_t>(i) % views.size()], &st);
      e2e.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      if (bare) {
        const std::vector<int64_t> shape = det.input_shape();
        auto b0 = std::chrono::steady_clock::now();
        det.backend().infer(det.input_blob().data(), shape, bare_out);
        bare_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - b0).count());
      }
      pre.push_back(st.pre);
      inf.push_back(st.infer);
      post.push_back(st.post);
    }
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
    result["status"] = "ok";
    result["stages"] = {{"preprocess", summarize(pre)}, {"h2d", nullptr},          {"compute", summarize(inf)},
                        {"d2h", nullptr},               {"postprocess", summarize(post)},
                        {"end_to_end", summarize(e2e)}};
    result["absent"] = {{"h2d", "host-timed synchronous infer: copies are inside compute"},
                        {"d2h", "host-timed synchronous infer: copies are inside compute"}};
    result["throughput"] = {{"queries", iters}, {"batch", 1}, {"wall_s", wall},
                            {"batches_per_s", iters / wall}, {"images_per_s", iters / wall}};
    result["warmup"] = {{"queries", warmup}, {"seconds", warm_s}};
    if (bare) {
      result["bare_run"] = summarize(bare_ms);
      // median of the per-iteration ratios: each pair ran back to back, so slow phases of a shared machine cancel
      std::vector<double> ratios;
      for (size_t i = 0; i < e2e.size(); ++i) ratios.push_back(e2e[i] / bare_ms[i]);
      result["end_to_end_over_bare_run"] = summarize(ratios)["median"];
    }
    result["cold_start"] = {{"load_ms", load_ms}, {"first_inference_ms", first_ms}};
    const long rss = peak_rss_bytes();
    result["memory"] = {{"peak_rss_bytes", rss >= 0 ? json(rss) : json(nullptr)}, {"gpu_bytes", "unknown"}};
  } catch (const drt::Error& e) {
    result["status"] = e.status() == drt::Status::BackendUnavailable ? "not available" : "failed";
    result["error"] = e.what();
    std::fprintf(stderr, "defectrt_bench: %s\n", e.what());
    rc = 1;
  } catch (const std::exception& e) {
    result["status"] = "failed";
    result["error"] = e.what();
    std::fprintf(stderr, "defectrt_bench: %s\n", e.what());
    rc = 1;
  }
  report["results"] = json::array({result});
  const std::string text = report.dump(2) + "\n";
  if (out_path.empty()) {
    std::cout << text;
  } else {
    const std::string tmp = out_path + ".tmp";
    {
#if defined(_WIN32)
      std::ofstream f(drt::widen(tmp).c_str(), std::ios::binary);
#else
      std::ofstream f(tmp.c_str(), std::ios::binary);
#endif
      if (!(f << text)) {
        std::fprintf(stderr, "defectrt_bench: cannot write %s\n", tmp.c_str());
        return 1;
      }
    }
    if (!replace_file(tmp, out_path)) {
      std::fprintf(stderr, "defectrt_bench: cannot move %s to %s\n", tmp.c_str(), out_path.c_str());
      return 1;
    }
    std::fprintf(stderr, "defectrt_bench: wrote %s\n", out_path.c_str());
  }
  return rc;
}
