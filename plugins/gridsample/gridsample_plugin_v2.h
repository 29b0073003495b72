// SPDX-License-Identifier: Apache-2.0
//
// DrtGridSample, plugin_version "1": IPluginV2DynamicExt + IPluginCreator.
// For TensorRT 8.x (8.0 - 8.6, JetPack 4.6 - 6.0); deprecated in 10.x and still present in 11.x, so the
// same library also loads it there. TensorRT 10+ targets get plugin_version "2" (gridsample_plugin_v3.h).
//
// UNVERIFIED ON HARDWARE: written from NVIDIA's documented interface (TensorRT 8.x C++ API reference);
// never compiled against TensorRT headers nor run on a GPU on the machines this project is developed on.
#ifndef DEFECTRT_GRIDSAMPLE_PLUGIN_V2_H
#define DEFECTRT_GRIDSAMPLE_PLUGIN_V2_H

#include "gridsample_plugin_common.h"

#include <string>

namespace drt
{

class GridSamplePluginV2 : public nvinfer1::IPluginV2DynamicExt
{
public:
    explicit GridSamplePluginV2(std::string layerName = std::string());
    GridSamplePluginV2(GridSamplePluginV2 const&) = default;
    ~GridSamplePluginV2() override = default;

    // IPluginV2DynamicExt
    nvinfer1::IPluginV2DynamicExt* clone() const noexcept override;
    nvinfer1::DimsExprs getOutputDimensions(int32_t outputIndex, nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(
        int32_t pos, nvinfer1::PluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept override;
    void configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    size_t getWorkspaceSize(nvinfer1::PluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::PluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;

    // IPluginV2Ext
    nvinfer1::DataType getOutputDataType(
        int32_t index, nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;

    // IPluginV2
    char const* getPluginType() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    int32_t getNbOutputs() const noexcept override;
    int32_t initialize() noexcept override;
    void terminate() noexcept override;
    size_t getSerializationSize() const noexcept override;
    void serialize(void* buffer) const noexcept override;
    void destroy() noexcept override;
    void setPluginNamespace(char const* pluginNamespace) noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // The serialized form: a header that deserializePlugin checks (the configuration is fixed).
    static size_t serializedSize() noexcept;
    static bool checkSerialized(void const* data, size_t length) noexcept;

private:
    std::string mLayerName; // for log messages only (not serialized)
    std::string mNamespace{gsplugin::kPluginNamespace};
};

class GridSamplePluginV2Creator : public nvinfer1::IPluginCreator
{
public:
    GridSamplePluginV2Creator() = default;
    ~GridSamplePluginV2Creator() override = default;

    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    nvinfer1::IPluginV2* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc) noexcept override;
    nvinfer1::IPluginV2* deserializePlugin(
        char const* name, void const* serialData, size_t serialLength) noexcept override;
    void setPluginNamespace(char const* pluginNamespace) noexcept override;
    char const* getPluginNamespace() const noexcept override;

private:
    std::string mNamespace{gsplugin::kPluginNamespace};
};

} // namespace drt

#endif // DEFECTRT_GRIDSAMPLE_PLUGIN_V2_H
