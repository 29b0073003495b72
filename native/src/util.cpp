#include "util.h"

#include <sys/stat.h>
#include <sys/types.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#if defined(_WIN32)
#include "windows_api.h"
#endif

namespace drt {

size_t checked_mul(size_t a, size_t b, const char* what) {
  if (a != 0 && b > std::numeric_limits<size_t>::max() / a)
    throw Error(Status::InvalidArgument, std::string(what) + ": size overflows this platform's address range");
  return a * b;
}

size_t checked_add(size_t a, size_t b, const char* what) {
  if (b > std::numeric_limits<size_t>::max() - a)
    throw Error(Status::InvalidArgument, std::string(what) + ": size overflows this platform's address range");
  return a + b;
}

size_t element_count(const std::vector<int64_t>& shape, const char* what) {
  size_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw Error(Status::RuntimeFailure, std::string(what) + ": negative dimension in a tensor shape");
    if (static_cast<uint64_t>(d) > std::numeric_limits<size_t>::max())
      throw Error(Status::InvalidArgument, std::string(what) + ": dimension too large");
    n = checked_mul(n, static_cast<size_t>(d), what);
  }
  return n;
}

#if defined(_WIN32)
std::wstring widen(const std::string& s) {
  if (s.empty()) return std::wstring();
  int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s.data(), static_cast<int>(s.size()), nullptr, 0);
  if (n <= 0) throw Error(Status::InvalidArgument, s + ": not valid UTF-8");
  std::wstring w(static_cast<size_t>(n), L'\0');
  MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s.data(), static_cast<int>(s.size()), &w[0], n);
  return w;
}
static bool stat_mode(const std::string& path, unsigned* mode) {
  struct _stat64 st;
  if (_wstat64(widen(path).c_str(), &st) != 0) return false;
  *mode = st.st_mode;
  return true;
}
static const unsigned kDirBit = _S_IFDIR, kRegBit = _S_IFREG, kTypeMask = _S_IFMT;
#else
static bool stat_mode(const std::string& path, unsigned* mode) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return false;
  *mode = st.st_mode;
  return true;
}
static const unsigned kDirBit = S_IFDIR, kRegBit = S_IFREG, kTypeMask = S_IFMT;
#endif

bool is_directory(const std::string& path) {
  unsigned m = 0;
  return stat_mode(path, &m) && (m & kTypeMask) == kDirBit;
}
bool is_regular_file(const std::string& path) {
  unsigned m = 0;
  return stat_mode(path, &m) && (m & kTypeMask) == kRegBit;
}
bool path_exists(const std::string& path) {
  unsigned m = 0;
  return stat_mode(path, &m);
}

std::string join_path(const std::string& folder, const std::string& relative) {
  if (folder.empty()) return relative;
  char last = folder.back();
  if (last == '/' || last == '\\') return folder + relative;
  return folder + "/" + relative;
}

std::string lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string read_file(const std::string& path, size_t max_bytes) {
#if defined(_WIN32)
  std::ifstream f(widen(path).c_str(), std::ios::binary);
#else
  std::ifstream f(path.c_str(), std::ios::binary);
#endif
  if (!f) throw Error(Status::NotFound, path + ": cannot be opened for reading");
  f.seekg(0, std::ios::end);
  std::streamoff size = f.tellg();
  if (size < 0) throw Error(Status::NotFound, path + ": cannot be read");
  if (static_cast<uint64_t>(size) > max_bytes)
    throw Error(Status::InvalidArgument, path + ": " + std::to_string(static_cast<long long>(size)) +
                                             " bytes, more than the " + std::to_string(max_bytes) +
                                             " this file may have");
  f.seekg(0, std::ios::beg);
  std::string data(static_cast<size_t>(size), '\0');
  if (size > 0 && !f.read(&data[0], size)) throw Error(Status::NotFound, path + ": read failed");
  return data;
}

bool valid_utf8(const char* s) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(s);
  while (*p) {
    unsigned c = *p;
    int n = c < 0x80 ? 0 : (c >> 5) == 0x6 ? 1 : (c >> 4) == 0xE ? 2 : (c >> 3) == 0x1E ? 3 : -1;
    if (n < 0 || (n == 1 && c < 0xC2)) return false;
    uint32_t cp = n == 0 ? c : n == 1 ? (c & 0x1F) : n == 2 ? (c & 0x0F) : (c & 0x07);
    ++p;
    for (int i = 0; i < n; ++i, ++p) {
      if ((*p >> 6) != 0x2) return false;
      cp = (cp << 6) | (*p & 0x3F);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
  }
  return true;
}

}  // namespace drt
