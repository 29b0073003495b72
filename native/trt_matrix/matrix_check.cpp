// The matrix' executable (run_matrix.py): links libdefectrt's TensorRT backend built against one TensorRT version's
// headers and a stub libnvinfer, then walks the error paths that come before the GPU: a missing engine, a libnvinfer of
// another major version, and (here, without a GPU) the CUDA device query, or (with one) the stub's missing runtime. It
// also loads the DrtGridSample plugin library, which must resolve every symbol (RTLD_NOW) and register nothing without a
// registry. Prints one line per check; exit status 0 only when every check holds.
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "backend.h"
#include "status.h"

namespace {

int failures = 0;

void expect_error(const char* what, const std::string& engine, drt::Status want_a, drt::Status want_b,
                  const char* needle) {
  try {
    drt::BackendOptions options;
    drt::make_tensorrt_backend(engine, options);
    std::printf("FAIL %s: no error\n", what);
    ++failures;
  } catch (const drt::Error& e) {
    const bool status_ok = e.status() == want_a || e.status() == want_b;
    const bool text_ok = std::string(e.what()).find(needle) != std::string::npos;
    std::printf("%s %s: status %d, \"%.160s\"\n", status_ok && text_ok ? "ok  " : "FAIL", what,
                static_cast<int>(e.status()), e.what());
    if (!status_ok || !text_ok) ++failures;
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s WORK_DIR PLUGIN_LIBRARY EXPECTED_INTERFACES\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  expect_error("missing engine", dir + "/no-such.engine", drt::Status::NotFound, drt::Status::NotFound,
               "does not exist");
  const std::string engine = dir + "/garbage.engine";
  std::ofstream(engine, std::ios::binary) << "not an engine";
  setenv("DRT_STUB_TRT_VERSION", "7103", 1);  // a TensorRT 7.1 libnvinfer
  expect_error("libnvinfer of another version", engine, drt::Status::BackendUnavailable,
               drt::Status::BackendUnavailable, "but the libnvinfer loaded is 7.1.3");
  unsetenv("DRT_STUB_TRT_VERSION");
  // Without a GPU the device query fails; with one, the stub's createInferRuntime returns null.
  expect_error("past the version check", engine, drt::Status::RuntimeFailure, drt::Status::BackendUnavailable,
               "TensorRT backend: ");

  void* plugins = dlopen(argv[2], RTLD_NOW | RTLD_LOCAL);
  if (!plugins) {
    std::printf("FAIL plugin library load: %s\n", dlerror());
    return 1;
  }
  using Interfaces = int (*)();
  Interfaces interfaces = reinterpret_cast<Interfaces>(dlsym(plugins, "drt_plugins_interfaces"));
  const int got = interfaces ? interfaces() : -1;
  const bool ok = got == std::atoi(argv[3]);
  std::printf("%s plugin library load: drt_plugins_interfaces() = %d\n", ok ? "ok  " : "FAIL", got);
  if (!ok) ++failures;
  return failures == 0 ? 0 : 1;
}
