// Extras of the ONNX Runtime backend beyond the Backend interface: the model's metadata_props.
#pragma once
#include <map>
#include <string>

#include "backend.h"

namespace drt {
// Custom metadata of an ONNX model loaded by make_onnxruntime_backend (empty for other backends).
std::map<std::string, std::string> backend_metadata(const Backend& backend);
// Starts ONNX Runtime's environment (idempotent); BackendUnavailable when it cannot.
void init_onnxruntime();
}  // namespace drt
