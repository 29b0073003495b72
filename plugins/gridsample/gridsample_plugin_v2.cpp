// SPDX-License-Identifier: Apache-2.0
//
// DrtGridSample plugin_version "1" (IPluginV2DynamicExt). UNVERIFIED ON HARDWARE: see the header.
#include "gridsample_plugin_v2.h"

#include <cstring>
#include <new>
#include <utility>

namespace drt
{
namespace
{
// Serialized header: magic "DRGS", format 1, then the fixed configuration (align_corners, padding border=1,
// mode bilinear=0) so that an engine from an incompatible build of this library is refused, not misread.
uint32_t const kMagic = 0x53475244u; // "DRGS" little-endian
int32_t const kSerialized[5] = {static_cast<int32_t>(kMagic), 1, gsplugin::kAlignCorners, 1, 0};
} // namespace

// ------------------------------------------------------------------------------------------- plugin

GridSamplePluginV2::GridSamplePluginV2(std::string layerName)
    : mLayerName(std::move(layerName))
{
}

nvinfer1::IPluginV2DynamicExt* GridSamplePluginV2::clone() const noexcept
{
    try
    {
        return new GridSamplePluginV2(*this);
    }
    catch (...)
    {
        return nullptr;
    }
}

nvinfer1::DimsExprs GridSamplePluginV2::getOutputDimensions(int32_t outputIndex, nvinfer1::DimsExprs const* inputs,
    int32_t nbInputs, nvinfer1::IExprBuilder& /*exprBuilder*/) noexcept
{
    nvinfer1::DimsExprs out{};
    if (outputIndex != 0 || nbInputs != 2 || inputs == nullptr || inputs[0].nbDims != 4 || inputs[1].nbDims != 4)
    {
        gsplugin::logError(gsplugin::kPluginVersionV2, mLayerName.c_str(),
            "expects inputs X (N, C, H, W) and grid (N, Ho, Wo, 2) and has one output");
        out.nbDims = 0;
        return out;
    }
    if (inputs[1].d[3]->isConstant() && inputs[1].d[3]->getConstantValue() != 2)
    {
        gsplugin::logError(gsplugin::kPluginVersionV2, mLayerName.c_str(), "grid's last dimension must be 2");
    }
    out.nbDims = 4;
    out.d[0] = inputs[0].d[0]; // N
    out.d[1] = inputs[0].d[1]; // C
    out.d[2] = inputs[1].d[1]; // Ho
    out.d[3] = inputs[1].d[2]; // Wo
    return out;
}

bool GridSamplePluginV2::supportsFormatCombination(
    int32_t pos, nvinfer1::PluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (inOut == nullptr || pos < 0 || pos >= nbInputs + nbOutputs)
    {
        return false;
    }
    return gsplugin::supportsFormat(pos, inOut[pos].type, inOut[pos].format, inOut[0].type, nbInputs, nbOutputs);
}

void GridSamplePluginV2::configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    if (in == nullptr || nbInputs != 2 || nbOutputs != 1)
    {
        gsplugin::logError(gsplugin::kPluginVersionV2, mLayerName.c_str(), "expects 2 inputs and 1 output");
        return;
    }
    gsplugin::checkShapes(in[0].desc.dims, in[1].desc.dims, gsplugin::kPluginVersionV2, mLayerName.c_str());
}

size_t GridSamplePluginV2::getWorkspaceSize(nvinfer1::PluginTensorDesc const* /*inputs*/, int32_t /*nbInputs*/,
    nvinfer1::PluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept
{
    return 0;
}

int32_t GridSamplePluginV2::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
    nvinfer1::PluginTensorDesc const* outputDesc, void const* const* inputs, void* const* outputs,
    void* /*workspace*/, cudaStream_t stream) noexcept
{
    return gsplugin::enqueueGridSample(
        inputDesc, outputDesc, inputs, outputs, stream, gsplugin::kPluginVersionV2, mLayerName.c_str());
}

nvinfer1::DataType GridSamplePluginV2::getOutputDataType(
    int32_t /*index*/, nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    return (inputTypes != nullptr && nbInputs > 0) ? inputTypes[0] : nvinfer1::DataType::kFLOAT;
}

char const* GridSamplePluginV2::getPluginType() const noexcept
{
    return gsplugin::kPluginName;
}

char const* GridSamplePluginV2::getPluginVersion() const noexcept
{
    return gsplugin::kPluginVersionV2;
}

int32_t GridSamplePluginV2::getNbOutputs() const noexcept
{
    return 1;
}

int32_t GridSamplePluginV2::initialize() noexcept
{
    return 0;
}

void GridSamplePluginV2::terminate() noexcept {}

size_t GridSamplePluginV2::serializedSize() noexcept
{
    return sizeof(kSerialized);
}

bool GridSamplePluginV2::checkSerialized(void const* data, size_t length) noexcept
{
    return data != nullptr && length == sizeof(kSerialized) && std::memcmp(data, kSerialized, length) == 0;
}

size_t GridSamplePluginV2::getSerializationSize() const noexcept
{
    return serializedSize();
}

void GridSamplePluginV2::serialize(void* buffer) const noexcept
{
    if (buffer != nullptr)
    {
        std::memcpy(buffer, kSerialized, sizeof(kSerialized));
    }
}

void GridSamplePluginV2::destroy() noexcept
{
    delete this;
}

void GridSamplePluginV2::setPluginNamespace(char const* pluginNamespace) noexcept
{
    try
    {
        mNamespace = pluginNamespace ? pluginNamespace : "";
    }
    catch (...)
    {
    }
}

char const* GridSamplePluginV2::getPluginNamespace() const noexcept
{
    return mNamespace.c_str();
}

// ------------------------------------------------------------------------------------------ creator

char const* GridSamplePluginV2Creator::getPluginName() const noexcept
{
    return gsplugin::kPluginName;
}

char const* GridSamplePluginV2Creator::getPluginVersion() const noexcept
{
    return gsplugin::kPluginVersionV2;
}

nvinfer1::PluginFieldCollection const* GridSamplePluginV2Creator::getFieldNames() noexcept
{
    return gsplugin::fieldNames();
}

nvinfer1::IPluginV2* GridSamplePluginV2Creator::createPlugin(
    char const* name, nvinfer1::PluginFieldCollection const* fc) noexcept
{
    if (!gsplugin::validateFields(fc, gsplugin::kPluginVersionV2, name))
    {
        return nullptr; // the reason is logged
    }
    GridSamplePluginV2* plugin = nullptr;
    try
    {
        plugin = new GridSamplePluginV2(name ? name : "");
        plugin->setPluginNamespace(mNamespace.c_str());
    }
    catch (...)
    {
        delete plugin;
        return nullptr;
    }
    return plugin;
}

nvinfer1::IPluginV2* GridSamplePluginV2Creator::deserializePlugin(
    char const* name, void const* serialData, size_t serialLength) noexcept
{
    if (!GridSamplePluginV2::checkSerialized(serialData, serialLength))
    {
        gsplugin::logError(gsplugin::kPluginVersionV2, name,
            "the engine holds data this library does not understand; rebuild the engine with this library");
        return nullptr;
    }
    GridSamplePluginV2* plugin = nullptr;
    try
    {
        plugin = new GridSamplePluginV2(name ? name : "");
        plugin->setPluginNamespace(mNamespace.c_str());
    }
    catch (...)
    {
        delete plugin;
        return nullptr;
    }
    return plugin;
}

void GridSamplePluginV2Creator::setPluginNamespace(char const* pluginNamespace) noexcept
{
    try
    {
        mNamespace = pluginNamespace ? pluginNamespace : "";
    }
    catch (...)
    {
    }
}

char const* GridSamplePluginV2Creator::getPluginNamespace() const noexcept
{
    return mNamespace.c_str();
}

} // namespace drt
