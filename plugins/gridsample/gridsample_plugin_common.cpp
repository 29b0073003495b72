// SPDX-License-Identifier: Apache-2.0
//
// UNVERIFIED ON HARDWARE: see gridsample_plugin_common.h.
#include "gridsample_plugin_common.h"
#include "gridsample_kernel.h"

#include <climits>
#include <cstdio>
#include <cstring>
#include <vector>

namespace drt
{
namespace gsplugin
{
namespace
{

void logLine(char const* level, char const* version, char const* layer, std::string const& message) noexcept
{
    std::fprintf(stderr, "[defectrt] %s: %s v%s%s%s: %s\n", level, kPluginName, version ? version : "?",
        layer && *layer ? " " : "", layer ? layer : "", message.c_str());
    std::fflush(stderr);
}

std::string fieldText(nvinfer1::PluginField const& f)
{
    if (f.data == nullptr || f.length <= 0)
    {
        return std::string();
    }
    std::string s(static_cast<char const*>(f.data), static_cast<size_t>(f.length));
    size_t const end = s.find('\0'); // the length may or may not count a terminating NUL
    return end == std::string::npos ? s : s.substr(0, end);
}

// Integer value of a numeric field; false when the type is not numeric or there is no data.
bool fieldInt(nvinfer1::PluginField const& f, long long& value)
{
    if (f.data == nullptr || f.length < 1)
    {
        return false;
    }
    switch (f.type)
    {
    case nvinfer1::PluginFieldType::kINT32: value = *static_cast<int32_t const*>(f.data); return true;
    case nvinfer1::PluginFieldType::kINT16: value = *static_cast<int16_t const*>(f.data); return true;
    case nvinfer1::PluginFieldType::kINT8: value = *static_cast<int8_t const*>(f.data); return true;
#if NV_TENSORRT_MAJOR >= 10
    case nvinfer1::PluginFieldType::kINT64: value = *static_cast<int64_t const*>(f.data); return true;
#endif
    case nvinfer1::PluginFieldType::kFLOAT32:
    {
        float const v = *static_cast<float const*>(f.data);
        value = static_cast<long long>(v);
        return static_cast<float>(value) == v;
    }
    case nvinfer1::PluginFieldType::kFLOAT64:
    {
        double const v = *static_cast<double const*>(f.data);
        value = static_cast<long long>(v);
        return static_cast<double>(value) == v;
    }
    default: return false;
    }
}

int dimToInt(int64_t d)
{
    return (d < 0 || d > INT_MAX) ? -1 : static_cast<int>(d);
}

} // namespace

void logError(char const* version, char const* layer, std::string const& message) noexcept
{
    logLine("ERROR", version, layer, message);
}

void logWarning(char const* version, char const* layer, std::string const& message) noexcept
{
    logLine("WARNING", version, layer, message);
}

nvinfer1::PluginFieldCollection const* fieldNames() noexcept
{
    static std::vector<nvinfer1::PluginField> const fields{
        nvinfer1::PluginField("align_corners", nullptr, nvinfer1::PluginFieldType::kINT32, 1),
        nvinfer1::PluginField("mode", nullptr, nvinfer1::PluginFieldType::kCHAR, 1),
        nvinfer1::PluginField("padding_mode", nullptr, nvinfer1::PluginFieldType::kCHAR, 1),
    };
    static nvinfer1::PluginFieldCollection const fc{static_cast<int32_t>(fields.size()), fields.data()};
    return &fc;
}

bool validateFields(nvinfer1::PluginFieldCollection const* fc, char const* version, char const* layer) noexcept
{
    if (fc == nullptr || fc->nbFields <= 0 || fc->fields == nullptr)
    {
        return true; // nothing asked: the fixed configuration
    }
    bool ok = true;
    try
    {
        for (int32_t i = 0; i < fc->nbFields; ++i)
        {
            nvinfer1::PluginField const& f = fc->fields[i];
            std::string const name = f.name ? f.name : "";
            if (name == "align_corners")
            {
                long long v = 0;
                if (!fieldInt(f, v))
                {
                    logError(version, layer, "field align_corners must be an integer");
                    ok = false;
                }
                else if (v != kAlignCorners)
                {
                    logError(version, layer,
                        "align_corners=" + std::to_string(v) + " is not supported (only align_corners=0); "
                        "export with --grid-sample native or lowered");
                    ok = false;
                }
            }
            else if (name == "mode")
            {
                std::string const v = fieldText(f);
                if (f.type != nvinfer1::PluginFieldType::kCHAR || (v != "bilinear" && v != "linear"))
                {
                    logError(version, layer,
                        "mode='" + v + "' is not supported (only bilinear); export with --grid-sample native or lowered");
                    ok = false;
                }
            }
            else if (name == "padding_mode")
            {
                std::string const v = fieldText(f);
                if (f.type != nvinfer1::PluginFieldType::kCHAR || v != kPaddingMode)
                {
                    logError(version, layer,
                        "padding_mode='" + v + "' is not supported (only border); export with --grid-sample native "
                        "or lowered");
                    ok = false;
                }
            }
            else if (name == "plugin_version" || name == "plugin_namespace")
            {
                // parser bookkeeping, not a field of ours
            }
            else
            {
                logWarning(version, layer, "ignoring unknown field '" + name + "'");
            }
        }
    }
    catch (...)
    {
        logError(version, layer, "could not read the plugin fields");
        return false;
    }
    return ok;
}

bool supportsFormat(int32_t pos, nvinfer1::DataType type, nvinfer1::TensorFormat format, nvinfer1::DataType inputType,
    int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (nbInputs != 2 || nbOutputs != 1 || pos < 0 || pos > 2)
    {
        return false;
    }
    if (format != nvinfer1::TensorFormat::kLINEAR)
    {
        return false;
    }
    if (pos == 0)
    {
        return type == nvinfer1::DataType::kFLOAT || type == nvinfer1::DataType::kHALF;
    }
    return type == inputType; // grid and output follow X
}

bool checkShapes(nvinfer1::Dims const& x, nvinfer1::Dims const& grid, char const* version, char const* layer) noexcept
{
    try
    {
        if (x.nbDims != 4)
        {
            logError(version, layer, "input must be 4-D (N, C, H, W), got rank " + std::to_string(x.nbDims));
            return false;
        }
        if (grid.nbDims != 4)
        {
            logError(version, layer, "grid must be 4-D (N, Ho, Wo, 2), got rank " + std::to_string(grid.nbDims));
            return false;
        }
        if (grid.d[3] >= 0 && grid.d[3] != 2)
        {
            logError(version, layer, "grid's last dimension must be 2, got " + std::to_string(grid.d[3]));
            return false;
        }
        if (x.d[0] >= 0 && grid.d[0] >= 0 && x.d[0] != grid.d[0])
        {
            logError(version, layer,
                "input and grid batch differ: " + std::to_string(x.d[0]) + " vs " + std::to_string(grid.d[0]));
            return false;
        }
    }
    catch (...)
    {
        return false;
    }
    return true;
}

int32_t enqueueGridSample(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
    void const* const* inputs, void* const* outputs, cudaStream_t stream, char const* version,
    char const* layer) noexcept
{
    if (inputDesc == nullptr || outputDesc == nullptr || inputs == nullptr || outputs == nullptr)
    {
        logError(version, layer, "enqueue called without tensors");
        return -1;
    }
    nvinfer1::Dims const& xd = inputDesc[0].dims;
    nvinfer1::Dims const& gd = inputDesc[1].dims;
    if (!checkShapes(xd, gd, version, layer))
    {
        return -1;
    }
    nvinfer1::DataType const t = inputDesc[0].type;
    if (inputDesc[1].type != t || outputDesc[0].type != t)
    {
        logError(version, layer, "input, grid and output must have the same data type");
        return -1;
    }
    int dtype = -1;
    if (t == nvinfer1::DataType::kFLOAT)
    {
        dtype = DRT_GRIDSAMPLE_FP32;
    }
    else if (t == nvinfer1::DataType::kHALF)
    {
        dtype = DRT_GRIDSAMPLE_FP16;
    }
    else
    {
        logError(version, layer, "only FP32 and FP16 are supported");
        return -1;
    }
    int const N = dimToInt(xd.d[0]), C = dimToInt(xd.d[1]), H = dimToInt(xd.d[2]), W = dimToInt(xd.d[3]);
    int const Ho = dimToInt(gd.d[1]), Wo = dimToInt(gd.d[2]);
    if (N < 0 || C < 0 || H < 0 || W < 0 || Ho < 0 || Wo < 0)
    {
        logError(version, layer, "a dimension is negative or too large");
        return -1;
    }
    int const rc = drtGridSampleLaunch(inputs[0], inputs[1], outputs[0], N, C, H, W, Ho, Wo, dtype, stream);
    if (rc != 0)
    {
        try
        {
            std::string msg = "kernel launch failed (" + std::to_string(rc) + ")";
            if (rc > 0)
            {
                msg += ": ";
                msg += cudaGetErrorString(static_cast<cudaError_t>(rc));
            }
            logError(version, layer, msg);
        }
        catch (...)
        {
        }
        return -1;
    }
    return 0;
}

} // namespace gsplugin
} // namespace drt
