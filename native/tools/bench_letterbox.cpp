// bench_letterbox: time the CPU letterbox + normalise (drt::letterbox_to_planes) alone, on a random image.
//
//   bench_letterbox [--src WxH] [--dst WxH] [--format bgr|rgb|bgra|rgba|gray] [--iters N] [--rounds N]
//
// Prints one line per round (the median and the minimum of N calls, in ms) and a last line
// "median_of_rounds_ms <x>". Used to compare two builds of the core side by side (run them alternately: see
// BENCHMARKS.md, issue 17); not part of any test.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "preprocess.h"

namespace {

// "WxH" with 1 <= W, H <= 65536.
bool parse_size(const char* s, int* w, int* h) {
  char* end = nullptr;
  const long a = std::strtol(s, &end, 10);
  if (end == s || *end != 'x') return false;
  const char* rest = end + 1;
  const long b = std::strtol(rest, &end, 10);
  if (end == rest || *end != '\0' || a < 1 || b < 1 || a > 65536 || b > 65536) return false;
  *w = static_cast<int>(a);
  *h = static_cast<int>(b);
  return true;
}

int usage() {
  std::fprintf(stderr,
               "usage: bench_letterbox [--src WxH] [--dst WxH] [--format bgr|rgb|bgra|rgba|gray] [--iters N] "
               "[--rounds N]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  int sw = 1280, sh = 720, dw = 672, dh = 384, iters = 200, rounds = 5;
  drt::lb::PixelFormat format = drt::lb::BGR8;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) return usage();
    const char* v = argv[++i];
    if (a == "--src" && parse_size(v, &sw, &sh)) continue;
    if (a == "--dst" && parse_size(v, &dw, &dh)) continue;
    if (a == "--iters" && (iters = std::atoi(v)) > 0) continue;
    if (a == "--rounds" && (rounds = std::atoi(v)) > 0) continue;
    if (a == "--format") {
      const std::string f = v;
      if (f == "bgr") format = drt::lb::BGR8;
      else if (f == "rgb") format = drt::lb::RGB8;
      else if (f == "bgra") format = drt::lb::BGRA8;
      else if (f == "rgba") format = drt::lb::RGBA8;
      else if (f == "gray") format = drt::lb::GRAY8;
      else return usage();
      continue;
    }
    return usage();
  }
  try {
    const int cn = drt::lb::detail::channels(format);
    std::vector<uint8_t> pixels(static_cast<size_t>(sw) * static_cast<size_t>(sh) * static_cast<size_t>(cn));
    std::mt19937 rng(7);
    for (uint8_t& p : pixels) p = static_cast<uint8_t>(rng() >> 24);
    const drt::ImageView view = drt::make_image_view(pixels.data(), sw, sh, 0, format);
    const drt::lb::Geometry g = drt::letterbox_geometry(view, dw, dh);
    std::vector<float> out(static_cast<size_t>(3) * static_cast<size_t>(dw) * static_cast<size_t>(dh));
    std::vector<double> medians;
    for (int r = 0; r < rounds; ++r) {
      std::vector<double> ms;
      for (int i = 0; i < iters; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        drt::letterbox_to_planes(view, g, out.data());
        ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      }
      std::sort(ms.begin(), ms.end());
      medians.push_back(ms[ms.size() / 2]);
      std::printf("round %d: median %.4f ms, min %.4f ms (%dx%d -> %dx%d, %d channels, %d calls)\n", r,
                  ms[ms.size() / 2], ms.front(), sw, sh, dw, dh, cn, iters);
    }
    std::sort(medians.begin(), medians.end());
    std::printf("median_of_rounds_ms %.4f\n", medians[medians.size() / 2]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_letterbox: %s\n", e.what());
    return 1;
  }
  return 0;
}
