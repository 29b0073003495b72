// SPDX-License-Identifier: Apache-2.0
//
// DrtGridSample plugin_version "2" (IPluginV3). UNVERIFIED ON HARDWARE: see the header.
#include "gridsample_plugin_v3.h"

#if NV_TENSORRT_MAJOR >= 10

#include <new>
#include <utility>

namespace drt
{

// ------------------------------------------------------------------------------------------- plugin

GridSamplePluginV3::GridSamplePluginV3(std::string layerName)
    : mLayerName(std::move(layerName))
{
    buildSerializedFields();
}

GridSamplePluginV3::GridSamplePluginV3(GridSamplePluginV3 const& other)
    : nvinfer1::IPluginV3(other)
    , nvinfer1::IPluginV3OneCore(other)
    , nvinfer1::IPluginV3OneBuild(other)
    , nvinfer1::IPluginV3OneRuntime(other)
    , mLayerName(other.mLayerName)
    , mAlignCorners(other.mAlignCorners)
    , mMode(other.mMode)
    , mPaddingMode(other.mPaddingMode)
{
    buildSerializedFields(); // the field pointers must point into this object, not `other`
}

void GridSamplePluginV3::buildSerializedFields()
{
    mSerialFields.clear();
    mSerialFields.emplace_back("align_corners", &mAlignCorners, nvinfer1::PluginFieldType::kINT32, 1);
    mSerialFields.emplace_back(
        "mode", mMode.c_str(), nvinfer1::PluginFieldType::kCHAR, static_cast<int32_t>(mMode.size() + 1));
    mSerialFields.emplace_back("padding_mode", mPaddingMode.c_str(), nvinfer1::PluginFieldType::kCHAR,
        static_cast<int32_t>(mPaddingMode.size() + 1));
    mSerialFC.nbFields = static_cast<int32_t>(mSerialFields.size());
    mSerialFC.fields = mSerialFields.data();
}

nvinfer1::IPluginCapability* GridSamplePluginV3::getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
    case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
    case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

nvinfer1::IPluginV3* GridSamplePluginV3::clone() noexcept
{
    try
    {
        return new GridSamplePluginV3(*this);
    }
    catch (...)
    {
        return nullptr;
    }
}

char const* GridSamplePluginV3::getPluginName() const noexcept
{
    return gsplugin::kPluginName;
}

char const* GridSamplePluginV3::getPluginVersion() const noexcept
{
    return gsplugin::kPluginVersionV3;
}

char const* GridSamplePluginV3::getPluginNamespace() const noexcept
{
    return gsplugin::kPluginNamespace;
}

int32_t GridSamplePluginV3::configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    if (in == nullptr || nbInputs != 2 || nbOutputs != 1)
    {
        gsplugin::logError(gsplugin::kPluginVersionV3, mLayerName.c_str(), "expects 2 inputs and 1 output");
        return -1;
    }
    return gsplugin::checkShapes(in[0].desc.dims, in[1].desc.dims, gsplugin::kPluginVersionV3, mLayerName.c_str())
        ? 0
        : -1;
}

int32_t GridSamplePluginV3::getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
    nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (outputTypes == nullptr || inputTypes == nullptr || nbOutputs != 1 || nbInputs != 2)
    {
        return -1;
    }
    outputTypes[0] = inputTypes[0];
    return 0;
}

int32_t GridSamplePluginV3::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
    nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/, nvinfer1::DimsExprs* outputs,
    int32_t nbOutputs, nvinfer1::IExprBuilder& /*exprBuilder*/) noexcept
{
    if (inputs == nullptr || outputs == nullptr || nbInputs != 2 || nbOutputs != 1 || inputs[0].nbDims != 4
        || inputs[1].nbDims != 4)
    {
        gsplugin::logError(gsplugin::kPluginVersionV3, mLayerName.c_str(),
            "expects inputs X (N, C, H, W) and grid (N, Ho, Wo, 2) and has one output");
        return -1;
    }
    if (inputs[1].d[3]->isConstant() && inputs[1].d[3]->getConstantValue() != 2)
    {
        gsplugin::logError(gsplugin::kPluginVersionV3, mLayerName.c_str(), "grid's last dimension must be 2");
        return -1;
    }
    outputs[0].nbDims = 4;
    outputs[0].d[0] = inputs[0].d[0]; // N
    outputs[0].d[1] = inputs[0].d[1]; // C
    outputs[0].d[2] = inputs[1].d[1]; // Ho
    outputs[0].d[3] = inputs[1].d[2]; // Wo
    return 0;
}

bool GridSamplePluginV3::supportsFormatCombination(
    int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (inOut == nullptr || pos < 0 || pos >= nbInputs + nbOutputs)
    {
        return false;
    }
    return gsplugin::supportsFormat(
        pos, inOut[pos].desc.type, inOut[pos].desc.format, inOut[0].desc.type, nbInputs, nbOutputs);
}

int32_t GridSamplePluginV3::getNbOutputs() const noexcept
{
    return 1;
}

int32_t GridSamplePluginV3::onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::PluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    if (in == nullptr || nbInputs != 2 || nbOutputs != 1)
    {
        return -1;
    }
    return gsplugin::checkShapes(in[0].dims, in[1].dims, gsplugin::kPluginVersionV3, mLayerName.c_str()) ? 0 : -1;
}

int32_t GridSamplePluginV3::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
    nvinfer1::PluginTensorDesc const* outputDesc, void const* const* inputs, void* const* outputs,
    void* /*workspace*/, cudaStream_t stream) noexcept
{
    return gsplugin::enqueueGridSample(
        inputDesc, outputDesc, inputs, outputs, stream, gsplugin::kPluginVersionV3, mLayerName.c_str());
}

nvinfer1::IPluginV3* GridSamplePluginV3::attachToContext(nvinfer1::IPluginResourceContext* /*context*/) noexcept
{
    return clone(); // no per-context resources
}

nvinfer1::PluginFieldCollection const* GridSamplePluginV3::getFieldsToSerialize() noexcept
{
    return &mSerialFC;
}

// ------------------------------------------------------------------------------------------ creator

nvinfer1::IPluginV3* GridSamplePluginV3Creator::createPlugin(
    char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept
{
    // Build phase: the ONNX node's attributes. Runtime phase: getFieldsToSerialize() of the built plugin.
    // Either way the configuration must be the implemented one.
    char const* what = phase == nvinfer1::TensorRTPhase::kRUNTIME ? "engine" : "node";
    if (!gsplugin::validateFields(fc, gsplugin::kPluginVersionV3, name))
    {
        gsplugin::logError(gsplugin::kPluginVersionV3, name,
            std::string("refusing the ") + what + " (unsupported configuration, see above)");
        return nullptr;
    }
    try
    {
        return new GridSamplePluginV3(name ? name : "");
    }
    catch (...)
    {
        return nullptr;
    }
}

nvinfer1::PluginFieldCollection const* GridSamplePluginV3Creator::getFieldNames() noexcept
{
    return gsplugin::fieldNames();
}

char const* GridSamplePluginV3Creator::getPluginName() const noexcept
{
    return gsplugin::kPluginName;
}

char const* GridSamplePluginV3Creator::getPluginVersion() const noexcept
{
    return gsplugin::kPluginVersionV3;
}

char const* GridSamplePluginV3Creator::getPluginNamespace() const noexcept
{
    return gsplugin::kPluginNamespace;
}

} // namespace drt

#endif // NV_TENSORRT_MAJOR >= 10
