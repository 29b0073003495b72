// SHA-256 (FIPS 180-4) of a file, for the bundle's `files` hashes.
#pragma once
#include <string>

namespace drt {
// Lower-case hex digest of the file's bytes; NotFound when it cannot be read.
std::string sha256_file(const std::string& path);
std::string sha256_hex(const void* data, size_t size);
}  // namespace drt
