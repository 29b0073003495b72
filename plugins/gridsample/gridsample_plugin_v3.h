// SPDX-License-Identifier: Apache-2.0
//
// DrtGridSample, plugin_version "2": IPluginV3 with IPluginV3OneCore / IPluginV3OneBuild /
// IPluginV3OneRuntime, and its IPluginCreatorV3One. TensorRT 10.0 and later (10.x, 11.x).
// Compiled only against TensorRT >= 10 (empty otherwise); TensorRT 8.x targets use plugin_version "1".
//
// UNVERIFIED ON HARDWARE: written from NVIDIA's documented interface (TensorRT 10.x C++ API reference);
// never compiled against TensorRT headers nor run on a GPU on the machines this project is developed on.
#ifndef DEFECTRT_GRIDSAMPLE_PLUGIN_V3_H
#define DEFECTRT_GRIDSAMPLE_PLUGIN_V3_H

#include "gridsample_plugin_common.h"

#if NV_TENSORRT_MAJOR >= 10

#include <string>
#include <vector>

namespace drt
{

class GridSamplePluginV3 : public nvinfer1::IPluginV3,
                           public nvinfer1::IPluginV3OneCore,
                           public nvinfer1::IPluginV3OneBuild,
                           public nvinfer1::IPluginV3OneRuntime
{
public:
    explicit GridSamplePluginV3(std::string layerName);
    GridSamplePluginV3(GridSamplePluginV3 const& other);
    GridSamplePluginV3& operator=(GridSamplePluginV3 const&) = delete;
    ~GridSamplePluginV3() override = default;

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t getNbOutputs() const noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    void buildSerializedFields();

    std::string mLayerName;
    // The fixed configuration, written into the engine so that deserialisation re-validates it.
    int32_t mAlignCorners{gsplugin::kAlignCorners};
    std::string mMode{gsplugin::kMode};
    std::string mPaddingMode{gsplugin::kPaddingMode};
    std::vector<nvinfer1::PluginField> mSerialFields;
    nvinfer1::PluginFieldCollection mSerialFC{};
};

class GridSamplePluginV3Creator : public nvinfer1::IPluginCreatorV3One
{
public:
    GridSamplePluginV3Creator() = default;
    ~GridSamplePluginV3Creator() override = default;

    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;
};

} // namespace drt

#endif // NV_TENSORRT_MAJOR >= 10
#endif // DEFECTRT_GRIDSAMPLE_PLUGIN_V3_H
