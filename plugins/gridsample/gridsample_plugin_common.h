// SPDX-License-Identifier: Apache-2.0
//
// What the two TensorRT interfaces of DrtGridSample share: names, the optional plugin fields and their
// validation, the format rule, the shape checks and the enqueue body.
//
// UNVERIFIED ON HARDWARE: written from NVIDIA's documented plugin interfaces; never compiled against
// TensorRT headers nor run on a GPU on the machines this project is developed on (plugins/README.md).
#ifndef DEFECTRT_GRIDSAMPLE_PLUGIN_COMMON_H
#define DEFECTRT_GRIDSAMPLE_PLUGIN_COMMON_H

#include <NvInfer.h>
#include <NvInferVersion.h>
#include <cuda_runtime_api.h>

#include <stdint.h>
#include <string>

namespace drt
{
namespace gsplugin
{

// One ONNX op type, two interfaces told apart by the version (the node's `plugin_version` attribute):
//   "1" -> IPluginV2DynamicExt (gridsample_plugin_v2.cpp): TensorRT 8.x, deprecated in 10.x, still in 11.x
//   "2" -> IPluginV3           (gridsample_plugin_v3.cpp): TensorRT 10.0 and later
static char const* const kPluginName = "DrtGridSample";
static char const* const kPluginVersionV2 = "1";
static char const* const kPluginVersionV3 = "2";
static char const* const kPluginNamespace = "defectrt";

// The one configuration implemented. The fields are optional; when present they must say exactly this.
static int32_t const kAlignCorners = 0;
static char const* const kMode = "bilinear";
static char const* const kPaddingMode = "border";

// Prints "[defectrt] DrtGridSample v<version> <layer>: <message>" to stderr (plugins get no logger).
void logError(char const* version, char const* layer, std::string const& message) noexcept;
void logWarning(char const* version, char const* layer, std::string const& message) noexcept;

// The fields a creator advertises in getFieldNames(): align_corners (INT32), mode (CHAR), padding_mode (CHAR).
nvinfer1::PluginFieldCollection const* fieldNames() noexcept;

// True when every known field in `fc` (may be null or empty) matches the implemented configuration;
// otherwise logs which field is wrong and returns false. Unknown fields are logged and ignored.
bool validateFields(nvinfer1::PluginFieldCollection const* fc, char const* version, char const* layer) noexcept;

// Format rule for supportsFormatCombination: 2 inputs (X, grid), 1 output; everything linear (NCHW);
// X is FP32 or FP16; grid and output have X's type.
bool supportsFormat(int32_t pos, nvinfer1::DataType type, nvinfer1::TensorFormat format, nvinfer1::DataType inputType,
    int32_t nbInputs, int32_t nbOutputs) noexcept;

// Shape rule for configure time: X rank 4, grid rank 4 with last dim 2, same batch. -1 (dynamic) passes.
bool checkShapes(nvinfer1::Dims const& x, nvinfer1::Dims const& grid, char const* version, char const* layer) noexcept;

// Runs the kernel for concrete descriptors; 0 on success, -1 (logged) otherwise.
int32_t enqueueGridSample(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
    void const* const* inputs, void* const* outputs, cudaStream_t stream, char const* version,
    char const* layer) noexcept;

} // namespace gsplugin
} // namespace drt

#endif // DEFECTRT_GRIDSAMPLE_PLUGIN_COMMON_H
