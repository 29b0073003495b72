// SPDX-License-Identifier: Apache-2.0
//
// Registers the DrtGridSample creators in TensorRT's global plugin registry when the library is loaded
// (ctypes.CDLL / dlopen / LoadLibrary), under the namespace "defectrt":
//   "DrtGridSample" version "1" (IPluginV2DynamicExt) with every TensorRT from 8.0 on,
//   "DrtGridSample" version "2" (IPluginV3) when built against TensorRT 10 or later.
// Registration is explicit (rather than REGISTER_TENSORRT_PLUGIN) so that the namespace passed to the
// registry and the creators' own namespace are both "defectrt". In TensorRT 11 the IPluginCreator overload
// of registerCreator is gone; the IPluginCreatorInterface overload (10.0+) then takes the V2 creator.
//
// UNVERIFIED ON HARDWARE: never compiled against TensorRT nor loaded by it here (plugins/README.md).
#include "gridsample_plugin_v2.h"
#include "gridsample_plugin_v3.h"

#include <string>

namespace
{

void registerOne(nvinfer1::IPluginRegistry* registry,
#if NV_TENSORRT_MAJOR >= 10
    nvinfer1::IPluginCreatorInterface& creator,
#else
    nvinfer1::IPluginCreator& creator,
#endif
    char const* version)
{
    if (!registry->registerCreator(creator, drt::gsplugin::kPluginNamespace))
    {
        drt::gsplugin::logWarning(version, "", "could not register the creator (already registered?)");
    }
}

struct Registrar
{
    Registrar()
    {
        nvinfer1::IPluginRegistry* registry = getPluginRegistry();
        if (registry == nullptr)
        {
            drt::gsplugin::logError("", "", "TensorRT's plugin registry is not available");
            return;
        }
        static drt::GridSamplePluginV2Creator v2;
        v2.setPluginNamespace(drt::gsplugin::kPluginNamespace);
        registerOne(registry, v2, drt::gsplugin::kPluginVersionV2);
#if NV_TENSORRT_MAJOR >= 10
        static drt::GridSamplePluginV3Creator v3;
        registerOne(registry, v3, drt::gsplugin::kPluginVersionV3);
#endif
    }
};

Registrar const gRegistrar;

} // namespace

// For tools that want to ask the library what it provides without TensorRT (e.g. ctypes):
// 1 = V2 only (built against TensorRT 8.x), 3 = V2 and V3 (TensorRT 10+).
extern "C"
#if defined(_WIN32)
    __declspec(dllexport)
#else
    __attribute__((visibility("default")))
#endif
    int drt_plugins_interfaces()
{
    return NV_TENSORRT_MAJOR >= 10 ? 3 : 1;
}
