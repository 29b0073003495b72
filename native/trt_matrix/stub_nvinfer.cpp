// A stand-in libnvinfer for the compile + link matrix (run_matrix.py): it is compiled against one TensorRT version's
// headers and defines only the C entry points that the headers' inline functions, libdefectrt's TensorRT backend and
// the DrtGridSample plugin library call. Including the headers makes the compiler check every definition here against
// that version's own declaration (a C-linkage function declared differently fails to compile). Anything missing makes
// the link of the backend or plugin library fail (-Wl,--no-undefined), which is the point: run_matrix.py --prove-missing
// builds it once without getPluginRegistry and expects exactly that failure.
//
// Behaviour, for the matrix' run step (no GPU, no TensorRT): no runtime, no plugin registry; getInferLibVersion reports
// the headers' version, or DRT_STUB_TRT_VERSION from the environment (to test the version-mismatch message).
#include <NvInfer.h>
#include <NvInferVersion.h>

#include <cstdlib>

extern "C" {

TENSORRTAPI void* createInferRuntime_INTERNAL(void* logger, int32_t version) noexcept {
  (void)logger;
  (void)version;
  return nullptr;
}

#if !defined(DRT_STUB_OMIT_getPluginRegistry)
TENSORRTAPI nvinfer1::IPluginRegistry* getPluginRegistry() noexcept { return nullptr; }
#endif

TENSORRTAPI int32_t getInferLibVersion() noexcept {
  const char* v = std::getenv("DRT_STUB_TRT_VERSION");
  return v ? static_cast<int32_t>(std::atoi(v)) : static_cast<int32_t>(NV_TENSORRT_VERSION);
}

}  // extern "C"
