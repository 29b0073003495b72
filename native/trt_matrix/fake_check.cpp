// Runs libdefectrt's TensorRT backend, compiled against one TensorRT version's headers, on the fake TensorRT and CUDA
// runtime of fake_trt.cpp (host memory, no GPU): loading, I/O description, dynamic and fixed batch, the float32 and
// float16 input paths, the GPU letterbox path (ImageInput) with host images, CUDA graph capture and replay, and the
// errors on a bad engine, a batch out of the profile and a wrong image size. One line per check; exit 0 when all hold.
// This checks the backend's logic against each version's API; it says nothing about real TensorRT or a real GPU.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "backend.h"
#include "cuda/letterbox_cuda.h"
#include "fake_trt.h"
#include "image_input.h"
#include "status.h"

namespace {

int failures = 0;
std::string dir;

void check(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

std::string engine_file(const std::string& name, const std::string& content) {
  const std::string path = dir + "/" + name;
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

std::unique_ptr<drt::Backend> load(const std::string& content, bool graph = false) {
  drt::BackendOptions options;
  options.cuda_graph = graph;
  return drt::make_tensorrt_backend(engine_file("e.engine", content), options);
}

void expect_error(const std::string& what, drt::Status status, const std::string& needle,
                  const std::function<void()>& f) {
  try {
    f();
    check(false, what + ": no error");
  } catch (const drt::Error& e) {
    std::string message = e.what();
    const bool ok = e.status() == status && message.find(needle) != std::string::npos;
    for (char& c : message) c = c == '\n' ? '|' : c;
    check(ok, what + " (status " + std::to_string(static_cast<int>(e.status())) + ": " + message.substr(0, 140) + ")");
  }
}

std::vector<float> ramp(int batch, float offset) {
  std::vector<float> v(static_cast<size_t>(batch) * 3 * 8 * 8);
  for (size_t i = 0; i < v.size(); ++i) v[i] = offset + static_cast<float>(i % 97) / 97.0f;
  return v;
}

// [sum, max] per image as the fake engine computes them
bool stats_match(const drt::HostTensor& t, const std::vector<float>& input, int batch) {
  if (t.shape != std::vector<int64_t>{batch, 2} || t.data.size() != static_cast<size_t>(batch) * 2 * 4) return false;
  const float* got = reinterpret_cast<const float*>(t.data.data());
  for (int b = 0; b < batch; ++b) {
    float sum = 0.f, mx = -1e30f;
    for (int i = 0; i < 192; ++i) {
      const float v = input[static_cast<size_t>(b) * 192 + i];
      sum += v;
      mx = v > mx ? v : mx;
    }
    if (std::fabs(got[2 * b] - sum) > 1e-3f * std::fabs(sum) + 1e-3f || got[2 * b + 1] != mx) return false;
  }
  return true;
}

void test_dynamic_batch() {
  auto backend = load("FAKEENGINE dynamic");
  check(std::string(backend->name()) == "tensorrt", "name");
  check(backend->min_batch() == 1 && backend->max_batch() == 4, "batch bounds from optimisation profile 0 (1..4)");
  const auto in = backend->inputs();
  const auto out = backend->outputs();
  check(in.size() == 1 && in[0].name == "images" && in[0].dtype == drt::DType::Float32, "input described");
  check(out.size() == 2 && out[0].name == "stats" && out[1].name == "index" && out[1].dtype == drt::DType::Int32,
        "outputs described in engine order");
  for (int batch : {3, 1, 4}) {
    const std::vector<float> x = ramp(batch, static_cast<float>(batch));
    std::vector<drt::HostTensor> result;
    backend->infer(x.data(), {batch, 3, 8, 8}, result);
    bool index_ok = result.size() == 2 && result[1].shape == std::vector<int64_t>{batch, 1};
    for (int b = 0; index_ok && b < batch; ++b) {
      index_ok = reinterpret_cast<const int32_t*>(result[1].data.data())[b] == 10 * b + 7;
    }
    check(result.size() == 2 && stats_match(result[0], x, batch) && index_ok,
          "infer batch " + std::to_string(batch) + ": outputs of the right shape and values");
  }
  const std::vector<float> x = ramp(5, 0.f);
  std::vector<drt::HostTensor> result;
  expect_error("batch 5 refused", drt::Status::InvalidArgument, "accepts 1 .. 4",
               [&] { backend->infer(x.data(), {5, 3, 8, 8}, result); });
  expect_error("height 9 refused", drt::Status::InvalidArgument, "dimension 2 is 9",
               [&] { backend->infer(x.data(), {1, 3, 9, 8}, result); });
  expect_error("3-D shape refused", drt::Status::InvalidArgument, "(batch, 3, height, width)",
               [&] { backend->infer(x.data(), {1, 3, 8}, result); });
}

void test_images_on_gpu_path() {
  auto backend = load("FAKEENGINE dynamic");
  auto* gpu = dynamic_cast<drt::ImageInput*>(backend.get());
  check(gpu != nullptr, "the TensorRT backend offers ImageInput");
  if (!gpu) return;
  // two host images of different sizes and formats, one with padded rows
  std::vector<uint8_t> a(13 * 21 * 3), b(5 * (9 * 4 + 3));
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<uint8_t>(i * 7);
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(255 - i * 3);
  drt::InputImage images[2];
  images[0].data = a.data(), images[0].width = 21, images[0].height = 13, images[0].stride = 21 * 3;
  images[0].format = drt::lb::BGR8;
  images[1].data = b.data(), images[1].width = 9, images[1].height = 5, images[1].stride = 9 * 4 + 3;
  images[1].format = drt::lb::RGBA8;
  std::vector<drt::lb::Geometry> geometry;
  std::vector<drt::HostTensor> result;
  const FakeCounters before = fake_counters();
  gpu->infer_images(images, 2, 8, 8, geometry, result);
  std::vector<float> want(2 * 192);
  drt::cuda::letterbox_host(a.data(), 21 * 3, drt::lb::BGR8, 21, 13, want.data(), drt::cuda::OutType::Float32, 8, 8);
  drt::cuda::letterbox_host(b.data(), 9 * 4 + 3, drt::lb::RGBA8, 9, 5, want.data() + 192, drt::cuda::OutType::Float32,
                            8, 8);
  check(fake_last_input() == want, "infer_images: the engine saw exactly the host twin's letterbox of both images");
  check(fake_counters().image_uploads - before.image_uploads == 2 &&
            fake_counters().kernel_launches - before.kernel_launches == 2,
        "infer_images: each host image uploaded once, one kernel launch each");
  check(geometry.size() == 2 && geometry[1].new_w == drt::lb::geometry(9, 5, 8, 8).new_w &&
            geometry[1].pad_top == drt::lb::geometry(9, 5, 8, 8).pad_top,
        "infer_images: geometry per image");
  check(result.size() == 2 && stats_match(result[0], want, 2), "infer_images: outputs");
  check(fake_counters().device_allocations - before.device_allocations == 1,
        "infer_images: one staging buffer, sized once for the largest image");
  const FakeCounters again = fake_counters();
  gpu->infer_images(images, 2, 8, 8, geometry, result);
  check(fake_counters().device_allocations == again.device_allocations, "infer_images: the staging buffer is reused");
  drt::InputImage bad[2] = {images[0], images[0]};
  bad[1].stride = 10;
  const FakeCounters before_bad = fake_counters();
  expect_error("infer_images: a stride below width * channels refused", drt::Status::InvalidArgument, "row stride",
               [&] { gpu->infer_images(bad, 2, 8, 8, geometry, result); });
  check(fake_counters().image_uploads == before_bad.image_uploads, "infer_images: a bad image fails before any upload");
  std::vector<drt::InputImage> five(5, images[0]);
  expect_error("infer_images: 5 images refused", drt::Status::InvalidArgument, "at most 4",
               [&] { gpu->infer_images(five.data(), 5, 8, 8, geometry, result); });
  expect_error("infer_images: a network size the engine does not take refused", drt::Status::InvalidArgument,
               "dimension 3 is 16", [&] { gpu->infer_images(images, 1, 16, 8, geometry, result); });
}

void test_fixed_batch_and_half() {
  auto backend = load("FAKEENGINE static2 half");
  check(backend->min_batch() == 2 && backend->max_batch() == 2, "static batch 2");
  check(backend->inputs()[0].dtype == drt::DType::Float16, "float16 input described");
  const std::vector<float> x = ramp(2, 0.25f);
  std::vector<drt::HostTensor> result;
  backend->infer(x.data(), {2, 3, 8, 8}, result);
  bool close = fake_last_input().size() == x.size();
  for (size_t i = 0; close && i < x.size(); ++i) close = std::fabs(fake_last_input()[i] - x[i]) <= 1e-3f;
  check(close, "float16 input: converted on the host, within half precision");
  auto* gpu = dynamic_cast<drt::ImageInput*>(backend.get());
  std::vector<uint8_t> gray(6 * 6, 200);
  drt::InputImage im;
  im.data = gray.data(), im.width = 6, im.height = 6, im.stride = 6, im.format = drt::lb::GRAY8;
  std::vector<drt::lb::Geometry> geometry;
  gpu->infer_images(&im, 1, 8, 8, geometry, result);
  const std::vector<float>& seen = fake_last_input();
  bool tail_zero = seen.size() == 2 * 192;
  for (size_t i = 192; tail_zero && i < seen.size(); ++i) tail_zero = seen[i] == 0.f;
  check(tail_zero && std::fabs(seen[8 * 3 + 3] - 200.f / 255.f) < 1e-3f,
        "fixed batch 2 with one image: image 0 letterboxed (float16), image 1 zeros");
}

void test_cuda_graph() {
  auto backend = load("FAKEENGINE dynamic", true);
  const FakeCounters start = fake_counters();
  bool all_right = true;
  for (int call = 0; call < 4; ++call) {
    const std::vector<float> x = ramp(2, static_cast<float>(call));  // new values each call: a replay must read them
    std::vector<drt::HostTensor> result;
    backend->infer(x.data(), {2, 3, 8, 8}, result);
    all_right = all_right && stats_match(result[0], x, 2);
  }
  const int launches = fake_counters().graph_launches - start.graph_launches;
  const int enqueues = fake_counters().enqueues - start.enqueues;
  check(all_right && launches == 3 && enqueues == 2,
        "CUDA graph: call 1 plain, call 2 captured + launched, calls 3-4 replayed (launches " +
            std::to_string(launches) + ", enqueues " + std::to_string(enqueues) + "), outputs right every time");
  const std::vector<float> x = ramp(3, 9.f);
  std::vector<drt::HostTensor> result;
  backend->infer(x.data(), {3, 3, 8, 8}, result);
  backend->infer(x.data(), {3, 3, 8, 8}, result);
  check(stats_match(result[0], x, 3) && fake_counters().enqueues - start.enqueues == 4,
        "CUDA graph: a new batch size runs plain once, then re-captures");
}

// An engine with two optimisation profiles: the backend uses profile 0 (the binding API lists its tensors first).
void test_two_profiles() {
  auto backend = load("FAKEENGINE dynamic twoprofiles");
  const std::vector<float> x = ramp(2, 1.f);
  std::vector<drt::HostTensor> result;
  backend->infer(x.data(), {2, 3, 8, 8}, result);
  check(backend->inputs().size() == 1 && backend->outputs().size() == 2 && stats_match(result[0], x, 2),
        "two optimisation profiles: one input, two outputs, profile 0 runs");
}

// Four threads share one backend (its mutex serialises the context): every result must be the one for its own input.
void test_shared_between_threads() {
  auto backend = load("FAKEENGINE dynamic");
  int wrong[4] = {0, 0, 0, 0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&backend, &wrong, t] {
      for (int i = 0; i < 50; ++i) {
        const int batch = 1 + (t + i) % 4;
        const std::vector<float> x = ramp(batch, static_cast<float>(t * 100 + i));
        std::vector<drt::HostTensor> result;
        backend->infer(x.data(), {batch, 3, 8, 8}, result);
        if (!stats_match(result[0], x, batch)) ++wrong[t];
      }
    });
  }
  for (auto& th : threads) th.join();
  check(wrong[0] + wrong[1] + wrong[2] + wrong[3] == 0, "4 threads x 50 calls on one backend, mixed batch sizes");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s WORK_DIR\n", argv[0]);
    return 2;
  }
  dir = argv[1];
  try {
    expect_error("a plan file TensorRT rejects", drt::Status::UnsupportedFormat, "not an engine of this version",
                 [] { load("garbage"); });
    expect_error("... and the message says how to rebuild", drt::Status::UnsupportedFormat, "rebuild it on this device",
                 [] { load("garbage"); });
    test_dynamic_batch();
    test_images_on_gpu_path();
    test_fixed_batch_and_half();
    test_cuda_graph();
    test_two_profiles();
    test_shared_between_threads();
  } catch (const std::exception& e) {
    check(false, std::string("unexpected exception: ") + e.what());
  }
  return failures == 0 ? 0 : 1;
}
