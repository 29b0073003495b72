// Unit tests of the core (ctest): letterbox, NMS, decoding, bundles, sizes. Plain asserts and a tiny runner (no
// test framework dependency); cross-checks against the Python runtime live in tests/test_native.py.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "backend.h"
#include "bundle.h"
#include "letterbox_math.h"
#include "postprocess.h"
#include "preprocess.h"
#include "sha256.h"
#include "status.h"
#include "util.h"

#if !defined(_WIN32)
#include <sys/stat.h>
#include <unistd.h>
#endif

namespace {

int g_failures = 0;
#define EXPECT(cond)                                                        \
  do {                                                                      \
    if (!(cond)) {                                                          \
      std::fprintf(stderr, "%s:%d: EXPECT failed: %s\n", __FILE__, __LINE__, #cond); \
      ++g_failures;                                                         \
    }                                                                       \
  } while (0)

// Runs f and returns the drt::Status it throws (Ok when it does not throw).
drt::Status status_of(const std::function<void()>& f, std::string* message = nullptr) {
  try {
    f();
  } catch (const drt::Error& e) {
    if (message) *message = e.what();
    return e.status();
  }
  return drt::Status::Ok;
}

void test_geometry_rounds_like_python() {
  drt::lb::Geometry g = drt::lb::geometry(1280, 720, 640, 640);
  EXPECT(g.new_w == 640 && g.new_h == 360 && g.pad_left == 0 && g.pad_top == 140);
  // w0 * r = 2.5 exactly: Python's round() gives 2 (half to even), not 3.
  g = drt::lb::geometry(5, 10, 4, 5);
  EXPECT(g.new_w == 2 && g.new_h == 5 && g.pad_left == 1 && g.pad_top == 0);
  // odd padding: floor of the half on the left/top (round(dw - 0.1)).
  g = drt::lb::geometry(100, 100, 101, 64);
  EXPECT(g.new_w == 64 && g.pad_left == 18 && g.pad_top == 0);
}

// The fast letterbox (SIMD or plain C++) against the per-pixel arithmetic on one random image; false on a mismatch
// (printed). Returns true without checking when the geometry refuses the sizes (*checked is not incremented).
bool fast_letterbox_matches(int sw, int sh, int dw, int dh, drt::lb::PixelFormat f, size_t stride_extra, bool simd,
                            std::mt19937* rng, int* checked) {
  const int cn = drt::lb::detail::channels(f);
  const size_t stride = static_cast<size_t>(sw) * cn + stride_extra;
  // exactly stride x height bytes: a read past the last row is an ASan error in the sanitizer build
  std::vector<uint8_t> img(stride * sh);
  for (uint8_t& p : img) p = static_cast<uint8_t>((*rng)());
  drt::ImageView v;
  v.pixels = img.data();
  v.width = sw;
  v.height = sh;
  v.stride = stride;
  v.format = f;
  drt::lb::Geometry g;
  if (status_of([&] { g = drt::letterbox_geometry(v, dw, dh); }) != drt::Status::Ok) return true;
  std::vector<float> planes(static_cast<size_t>(3) * dw * dh);
  drt::detail::letterbox_to_planes(v, g, planes.data(), simd);
  ++*checked;
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < dh; ++y)
      for (int x = 0; x < dw; ++x) {
        const float want = drt::lb::sample(img.data(), stride, f, g, x, y, c) / 255.0f;
        if (planes[(static_cast<size_t>(c) * dh + y) * dw + x] != want) {
          std::fprintf(stderr, "letterbox mismatch %dx%d->%dx%d fmt %d simd %d at %d,%d,%d\n", sw, sh, dw, dh, f,
                       simd ? 1 : 0, x, y, c);
          return false;
        }
      }
  return true;
}

void test_fast_letterbox_equals_sample() {
  std::mt19937 rng(1);
  const drt::lb::PixelFormat formats[] = {drt::lb::BGR8, drt::lb::RGB8, drt::lb::BGRA8, drt::lb::RGBA8,
                                          drt::lb::GRAY8};
  int checked = 0;
  for (int round = 0; round < 60; ++round) {
    const int sw = 1 + static_cast<int>(rng() % 300), sh = 1 + static_cast<int>(rng() % 300);
    const int dw = 8 + static_cast<int>(rng() % 120), dh = 8 + static_cast<int>(rng() % 120);
    const drt::lb::PixelFormat f = formats[round % 5];
    for (bool simd : {true, false})
      EXPECT(fast_letterbox_matches(sw, sh, dw, dh, f, static_cast<size_t>(round % 3) * 5, simd, &rng, &checked));
  }
  // Camera frames and network sizes users have (the SIMD path's whole blocks, its tail and the plain columns after
  // it), up- and downscales, 1-3 pixel wide images (no SIMD column at all), near-equal sizes, the copy and 2x paths,
  // every format, rows without padding (the 8-byte reads of the last row must stay inside the image).
  struct Case {
    int sw, sh, dw, dh;
  };
  const Case cases[] = {{1280, 720, 672, 384}, {1920, 1080, 640, 640}, {640, 480, 320, 320}, {3, 2, 100, 64},
                        {2, 300, 64, 64},      {1, 50, 16, 16},        {641, 479, 640, 640}, {17, 9, 96, 160},
                        {1000, 3, 128, 64},    {333, 777, 160, 96},
                        // equal size (copy) without / with padding, exact 2x (2x2 average) with padding
                        {64, 48, 64, 48},      {64, 48, 64, 64},       {64, 48, 80, 48},     {128, 96, 64, 64}};
  for (const Case& k : cases)
    for (drt::lb::PixelFormat f : formats)
      for (bool simd : {true, false})
        EXPECT(fast_letterbox_matches(k.sw, k.sh, k.dw, k.dh, f, 0, simd, &rng, &checked));
  EXPECT(checked > 80 + 140);
  // the two special paths: equal size (copy) and exact 2x (area average)
  std::vector<uint8_t> img(64 * 48 * 3);
  for (size_t i = 0; i < img.size(); ++i) img[i] = static_cast<uint8_t>(i * 7);
  drt::ImageView v;
  v.pixels = img.data();
  v.width = 64;
  v.height = 48;
  v.stride = 64 * 3;
  drt::lb::Geometry g = drt::letterbox_geometry(v, 32, 32);
  EXPECT(g.new_w == 32 && g.new_h == 24);
  const int want = (img[0 + 2] + img[3 + 2] + img[192 + 2] + img[195 + 2] + 2) >> 2;  // R of pixel (0,0)
  EXPECT(drt::lb::sample(img.data(), v.stride, drt::lb::BGR8, g, 0, g.pad_top, 0) == want);
  g = drt::letterbox_geometry(v, 64, 48);
  EXPECT(drt::lb::sample(img.data(), v.stride, drt::lb::BGR8, g, 5, 7, 1) == img[7 * 192 + 5 * 3 + 1]);
  EXPECT(drt::lb::sample(img.data(), v.stride, drt::lb::BGR8, drt::lb::geometry(64, 48, 64, 64), 0, 0, 0) == 114);
}

void test_image_checks_and_overflow() {
  uint8_t px[3] = {1, 2, 3};
  EXPECT(status_of([&] { drt::make_image_view(px, 0, 1, 0, drt::lb::BGR8); }) == drt::Status::InvalidArgument);
  EXPECT(status_of([&] { drt::make_image_view(px, 4, 1, 11, drt::lb::BGR8); }) == drt::Status::InvalidArgument);
  EXPECT(status_of([&] { drt::make_image_view(px, 1 << 21, 1, 0, drt::lb::BGR8); }) == drt::Status::InvalidArgument);
  EXPECT(status_of([&] { drt::make_image_view(px, 1, 1, 0, drt::lb::BGR8); }) == drt::Status::Ok);
  const size_t big = std::numeric_limits<size_t>::max() / 2 + 1;
  EXPECT(status_of([&] { drt::checked_mul(big, 2, "x"); }) == drt::Status::InvalidArgument);
  EXPECT(status_of([&] { drt::checked_add(big, big, "x"); }) == drt::Status::InvalidArgument);
  EXPECT(drt::checked_mul(0, big, "x") == 0);
  std::vector<int64_t> huge = {1 << 30, 1 << 30, 1 << 30, 1 << 30};
  EXPECT(status_of([&] { drt::element_count(huge, "t"); }) == drt::Status::InvalidArgument);
  // an image too elongated to keep a pixel after resizing
  EXPECT(status_of([&] { drt::letterbox_geometry(drt::make_image_view(px, 1, 1, 0, drt::lb::BGR8), 1, 1); }) ==
         drt::Status::Ok);
  std::vector<uint8_t> line(3 * 5000);
  EXPECT(status_of([&] {
           drt::letterbox_geometry(drt::make_image_view(line.data(), 5000, 1, 0, drt::lb::BGR8), 64, 64);
         }) == drt::Status::InvalidArgument);
}

void test_nms() {
  // two overlapping boxes of one class (IoU 0.81), one of another class at the same place, one apart
  std::vector<double> boxes = {0, 0, 10, 10, 0, 0, 10, 9, 0, 0, 10, 10, 20, 20, 30, 30};
  std::vector<float> scores = {0.9f, 0.8f, 0.7f, 0.6f};
  std::vector<int64_t> cls = {0, 0, 1, 0};
  std::vector<size_t> keep = drt::batched_nms(boxes, scores, cls, 0.5f, 300);
  EXPECT((keep == std::vector<size_t>{0, 2, 3}));
  keep = drt::batched_nms(boxes, scores, cls, 0.95f, 300);  // 0.9 <= 0.95: kept
  EXPECT((keep == std::vector<size_t>{0, 1, 2, 3}));
  keep = drt::batched_nms(boxes, scores, cls, 0.5f, 2);
  EXPECT((keep == std::vector<size_t>{0, 2}));
  // equal scores: lower index first
  std::vector<float> tie = {0.5f, 0.5f};
  std::vector<double> apart = {0, 0, 1, 1, 5, 5, 6, 6};
  keep = drt::batched_nms(apart, tie, std::vector<int64_t>{0, 0}, 0.5f, 300);
  EXPECT((keep == std::vector<size_t>{0, 1}));
  // IoU exactly at the threshold is kept (suppression needs IoU > threshold)
  std::vector<double> half = {0, 0, 2, 1, 0, 0, 1, 1};  // inter 1, union 2 -> 0.5 exactly
  keep = drt::batched_nms(half, std::vector<float>{0.9f, 0.8f}, std::vector<int64_t>{0, 0}, 0.5f, 300);
  EXPECT(keep.size() == 2);
  keep = drt::batched_nms(half, std::vector<float>{0.9f, 0.8f}, std::vector<int64_t>{0, 0}, 0.49f, 300);
  EXPECT(keep.size() == 1);
}

drt::HostTensor tensor(const std::string& name, drt::DType dt, std::vector<int64_t> shape, const void* data,
                       size_t bytes) {
  drt::HostTensor t;
  t.name = name;
  t.dtype = dt;
  t.shape = shape;
  t.data.assign(static_cast<const unsigned char*>(data), static_cast<const unsigned char*>(data) + bytes);
  return t;
}

void test_decoding() {
  // raw (1, 4 + 2, 3): anchor 0 class 1 at 0.9, anchor 1 class 0 at 0.3 (below conf 0.5), anchor 2 class 0 at 0.6
  const float raw[6][3] = {{50, 10, 100}, {50, 10, 100}, {20, 4, 300}, {10, 4, 10}, {0.1f, 0.3f, 0.6f},
                           {0.9f, 0.2f, 0.1f}};
  std::vector<drt::HostTensor> outs = {tensor("output0", drt::DType::Float32, {1, 6, 3}, raw, sizeof raw)};
  std::vector<drt::TensorInfo> infos(1);
  infos[0].name = "output0";
  infos[0].shape = {1, 6, 3};
  EXPECT(drt::output_layout(infos) == drt::OutputLayout::Raw);
  drt::lb::Geometry g = drt::lb::geometry(320, 160, 160, 160);  // scale 0.5, pad top 40
  drt::PostprocessOptions o;
  o.conf = 0.5f;
  std::vector<drt::Detection> d = drt::postprocess(outs, drt::OutputLayout::Raw, 0, g, o);
  EXPECT(d.size() == 2);
  EXPECT(d[0].class_id == 1 && std::fabs(d[0].score - 0.9f) < 1e-7f);
  // box cx 50 cy 50 w 20 h 10 in input pixels -> (40, 45, 60, 55) -> original ((x) / 0.5, (y - 40) / 0.5)
  EXPECT(d[0].x1 == 80.f && d[0].y1 == 10.f && d[0].x2 == 120.f && d[0].y2 == 30.f);
  // anchor 2: (100 +- 150, 100 +- 5) -> x clipped to the image's 0..320, y (95 - 40) / 0.5 = 110 .. 130
  EXPECT(d[1].class_id == 0 && d[1].x1 == 0.f && d[1].x2 == 320.f && d[1].y1 == 110.f && d[1].y2 == 130.f);

  // EfficientNMS: num 2 of K 3, filtered by conf, best first
  const int32_t num[1] = {2};
  const float eb[3][4] = {{0, 40, 10, 50}, {10, 50, 20, 60}, {0, 0, 1, 1}};
  const float es[3] = {0.4f, 0.8f, 0.99f};
  const int32_t ec[3] = {3, 1, 0};
  std::vector<drt::HostTensor> eff = {tensor("num_dets", drt::DType::Int32, {1, 1}, num, sizeof num),
                                      tensor("det_boxes", drt::DType::Float32, {1, 3, 4}, eb, sizeof eb),
                                      tensor("det_scores", drt::DType::Float32, {1, 3}, es, sizeof es),
                                      tensor("det_classes", drt::DType::Int32, {1, 3}, ec, sizeof ec)};
  o.conf = 0.25f;
  d = drt::postprocess(eff, drt::OutputLayout::EfficientNms, 0, g, o);
  EXPECT(d.size() == 2 && d[0].class_id == 1 && d[1].class_id == 3 && d[0].x1 == 20.f && d[0].y1 == 20.f);
  // rows (N, 7): batch 0 and 1, only batch 0's
  const float rows[3][7] = {{0, 0, 40, 10, 50, 0.5f, 2}, {1, 0, 40, 10, 50, 0.9f, 1}, {0, 0, 40, 10, 50, 0.7f, 4}};
  std::vector<drt::HostTensor> r = {tensor("detections", drt::DType::Float32, {3, 7}, rows, sizeof rows)};
  d = drt::postprocess(r, drt::OutputLayout::Rows, 0, g, o);
  EXPECT(d.size() == 2 && d[0].class_id == 4 && d[1].class_id == 2);
  o.max_det = 1;
  d = drt::postprocess(r, drt::OutputLayout::Rows, 0, g, o);
  EXPECT(d.size() == 1);
  // a short buffer is an error, never a read past it
  std::vector<drt::HostTensor> bad = {tensor("output0", drt::DType::Float32, {1, 6, 300}, raw, sizeof raw)};
  EXPECT(status_of([&] { drt::postprocess(bad, drt::OutputLayout::Raw, 0, g, o); }) == drt::Status::RuntimeFailure);
  std::vector<drt::TensorInfo> unknown(2);
  unknown[0].name = "a";
  unknown[1].name = "b";
  EXPECT(status_of([&] { drt::output_layout(unknown); }) == drt::Status::UnsupportedFormat);
}

void test_sha256_and_utf8() {
  EXPECT(drt::sha256_hex("abc", 3) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT(drt::sha256_hex("", 0) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  std::string million(1000000, 'a');
  EXPECT(drt::sha256_hex(million.data(), million.size()) ==
         "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  EXPECT(drt::valid_utf8("plain/path.onnx") && drt::valid_utf8("caf\xc3\xa9"));
  EXPECT(!drt::valid_utf8("/tmp/\xff\xfe.onnx") && !drt::valid_utf8("\xc0\xaf") && !drt::valid_utf8("\xed\xa0\x80"));
}

#if !defined(_WIN32)
std::string write(const std::string& path, const std::string& text) {
  std::ofstream f(path.c_str(), std::ios::binary);
  f << text;
  return path;
}

void test_bundles() {
  EXPECT(drt::safe_relative_path("model.onnx") && drt::safe_relative_path("golden/x.npy"));
  for (const char* bad : {"", "/etc/passwd", "../x", "a/../../x", "a//b", "./a", "c:/x", "a\\b", "a/."})
    EXPECT(!drt::safe_relative_path(bad));
  char tmpl[] = "/tmp/drt_bundle_XXXXXX";
  const char* dir = mkdtemp(tmpl);
  EXPECT(dir != nullptr);
  if (!dir) return;
  const std::string folder = dir;
  const std::string model = "not really onnx";
  write(folder + "/model.onnx", model);
  const std::string sha = drt::sha256_hex(model.data(), model.size());
  auto manifest = [&](const std::string& extra, const std::string& files) {
    write(folder + "/manifest.json", "{\"format\": \"defectrt-bundle\", \"model\": \"model.onnx\", \"files\": " +
                                         files + extra + "}");
  };
  const std::string files = "{\"model.onnx\": \"" + sha + "\"}";
  manifest(", \"names\": {\"0\": \"scratch\", \"1\": \"dent\"}, \"imgsz\": [96, 128], "
           "\"thresholds\": {\"conf\": 0.4, \"iou\": 0.6, \"max_det\": 50}",
           files);
  drt::Bundle b;
  EXPECT(status_of([&] { b = drt::read_bundle(folder); }) == drt::Status::Ok);
  EXPECT(b.names.size() == 2 && b.names[1] == "dent" && b.imgsz_h == 96 && b.imgsz_w == 128);
  EXPECT(b.thresholds.has_conf && std::fabs(b.thresholds.conf - 0.4f) < 1e-7f && b.thresholds.max_det == 50);
  std::string msg;
  manifest("", "{\"../model.onnx\": \"" + sha + "\"}");
  EXPECT(status_of([&] { drt::read_bundle(folder); }, &msg) == drt::Status::UnsupportedFormat);
  EXPECT(msg.find("not a relative path inside the bundle") != std::string::npos);
  manifest(", \"names\": {\"1000000000\": \"huge\"}", files);  // must fail at once, never allocate 1e9 names
  EXPECT(status_of([&] { drt::read_bundle(folder); }, &msg) == drt::Status::UnsupportedFormat);
  EXPECT(msg.find("class id 1000000000") != std::string::npos);
  manifest(", \"thresholds\": {\"conf\": 2}", files);
  EXPECT(status_of([&] { drt::read_bundle(folder); }) == drt::Status::UnsupportedFormat);
  manifest(", \"imgsz\": [0, 64]", files);
  EXPECT(status_of([&] { drt::read_bundle(folder); }) == drt::Status::UnsupportedFormat);
  manifest("", "{\"model.onnx\": \"" + std::string(64, '0') + "\"}");
  EXPECT(status_of([&] { drt::read_bundle(folder); }, &msg) == drt::Status::UnsupportedFormat);
  EXPECT(msg.find("does not match its sha256") != std::string::npos);
  EXPECT(status_of([&] { drt::read_bundle(folder, false); }) == drt::Status::Ok);
  write(folder + "/manifest.json", "{not json");
  EXPECT(status_of([&] { drt::read_bundle(folder); }) == drt::Status::UnsupportedFormat);
  EXPECT(drt::parse_names("[\"a\", \"b\"]", "x").size() == 2);
  // the Python-literal dict of older exporters / Ultralytics, as ast.literal_eval reads it; junk gives no names
  std::map<int, std::string> lit = drt::parse_names("{0: 'scratch', 1: \"dent's\", 2: 'a\\'b'}", "x");
  EXPECT(lit.size() == 3 && lit[0] == "scratch" && lit[1] == "dent's" && lit[2] == "a'b");
  EXPECT(drt::parse_names("{0: scratch}", "x").empty() && drt::parse_names("[1, 2", "x").empty());
  EXPECT(status_of([&] { drt::parse_names("{1000000000: 'x'}", "x"); }) == drt::Status::UnsupportedFormat);
  int h = 0, w = 0;
  EXPECT(drt::parse_imgsz("640", &h, &w) && h == 640 && w == 640);
  EXPECT(!drt::parse_imgsz("[640, 99999]", &h, &w));
  std::remove((folder + "/manifest.json").c_str());
  std::remove((folder + "/model.onnx").c_str());
  rmdir(folder.c_str());
}
#endif

}  // namespace

int main() {
  const std::pair<const char*, void (*)()> tests[] = {
      {"geometry_rounds_like_python", test_geometry_rounds_like_python},
      {"fast_letterbox_equals_sample", test_fast_letterbox_equals_sample},
      {"image_checks_and_overflow", test_image_checks_and_overflow},
      {"nms", test_nms},
      {"decoding", test_decoding},
      {"sha256_and_utf8", test_sha256_and_utf8},
#if !defined(_WIN32)
      {"bundles", test_bundles},
#endif
  };
  for (const auto& t : tests) {
    const int before = g_failures;
    t.second();
    std::printf("%s %s\n", g_failures == before ? "PASS" : "FAIL", t.first);
  }
  return g_failures == 0 ? 0 : 1;
}
