// Small helpers of the core: overflow-checked sizes, files and paths without std::filesystem (GCC 7.5 has it only
// as <experimental/filesystem>), UTF-8 checks.
#pragma once
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "status.h"

namespace drt {

// a * b and a + b for sizes; throw InvalidArgument naming `what` when the result does not fit in size_t.
size_t checked_mul(size_t a, size_t b, const char* what);
size_t checked_add(size_t a, size_t b, const char* what);
// Product of tensor dimensions (all >= 0) as an element count, overflow-checked.
size_t element_count(const std::vector<int64_t>& shape, const char* what);

bool is_directory(const std::string& path);
bool is_regular_file(const std::string& path);
bool path_exists(const std::string& path);
std::string join_path(const std::string& folder, const std::string& relative);
std::string lower(std::string s);
bool ends_with(const std::string& s, const std::string& suffix);
// Whole file; NotFound when it cannot be opened, InvalidArgument when larger than max_bytes.
std::string read_file(const std::string& path, size_t max_bytes);
bool valid_utf8(const char* s);
#if defined(_WIN32)
// UTF-8 -> UTF-16 for Windows file APIs (InvalidArgument when not UTF-8).
std::wstring widen(const std::string& s);
#endif

}  // namespace drt
