// Internal error type of libdefectrt: thrown inside the library, caught at the C ABI and turned into a drt_status.
#pragma once
#include <stdexcept>
#include <string>

namespace drt {

// Mirrors the C header's drt_status values that the internals raise (the C ABI maps these one to one).
enum class Status : int {
  Ok = 0,
  InvalidArgument = 1,
  NotFound = 2,
  UnsupportedFormat = 3,
  BackendUnavailable = 4,
  RuntimeFailure = 5,
  OutOfMemory = 6,
  Internal = 7,
};

class Error : public std::runtime_error {
 public:
  Error(Status status, const std::string& message) : std::runtime_error(message), status_(status) {}
  Status status() const noexcept { return status_; }

 private:
  Status status_;
};

}  // namespace drt
