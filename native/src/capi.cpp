// The C ABI (include/defectrt.h) over drt::Detector. Every entry point catches everything: drt::Error becomes its
// drt_status, std::bad_alloc DRT_E_OUT_OF_MEMORY, anything else DRT_E_PYTHON ("internal error"); no exception
// crosses into the caller.
#include <cstdarg>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "defectrt.h"
#include "detector.h"
#include "onnxruntime_backend.h"
#include "status.h"
#include "util.h"

#ifndef DRT_PACKAGE_VERSION
#define DRT_PACKAGE_VERSION "0.0.0+unknown"
#endif

namespace {

thread_local std::string g_error;

drt_status set_error(drt_status s, const std::string& msg) {
  try {
    g_error = msg;
  } catch (...) {
  }
  return s;
}
void clear_error() { g_error.clear(); }

drt_status to_c(drt::Status s) {
  switch (s) {
    case drt::Status::Ok: return DRT_OK;
    case drt::Status::InvalidArgument: return DRT_E_INVALID_ARGUMENT;
    case drt::Status::NotFound: return DRT_E_NOT_FOUND;
    case drt::Status::UnsupportedFormat: return DRT_E_UNSUPPORTED_FORMAT;
    case drt::Status::BackendUnavailable: return DRT_E_INIT_FAILED;
    case drt::Status::RuntimeFailure: return DRT_E_RUNTIME;
    case drt::Status::OutOfMemory: return DRT_E_OUT_OF_MEMORY;
    case drt::Status::Internal: return DRT_E_PYTHON;
  }
  return DRT_E_PYTHON;
}

// Runs f() and maps whatever it throws; `fn` prefixes the message.
template <typename F>
drt_status guarded(const char* fn, F&& f) {
  try {
    return f();
  } catch (const drt::Error& e) {
    return set_error(to_c(e.status()), std::string(fn) + ": " + e.what());
  } catch (const std::bad_alloc&) {
    return set_error(DRT_E_OUT_OF_MEMORY, std::string(fn) + ": out of memory");
  } catch (const std::exception& e) {
    return set_error(DRT_E_PYTHON, std::string(fn) + ": internal error: " + e.what());
  } catch (...) {
    return set_error(DRT_E_PYTHON, std::string(fn) + ": internal error (unknown exception)");
  }
}

// ---- handle table: slots are never freed or reused, so a stale handle reads as destroyed -------------------------
const uint32_t kMagic = 0x44525444u;  // "DRTD"
const size_t kSlotsPerChunk = 64;

}  // namespace

struct drt_detector {
  uint32_t magic = 0;
  bool live = false;
  std::mutex call_lock;   // serialises drt_detect / destroy on this handle
  std::mutex state_lock;  // guards live + names for the cheap getters
  drt::Detector* detector = nullptr;
  std::vector<std::string> names;
};

namespace {

std::mutex g_registry_lock;
std::vector<drt_detector*>* g_chunks = nullptr;  // never freed: handles stay checkable for the process' life
size_t g_used_in_last = kSlotsPerChunk;

drt_detector* alloc_slot() {
  std::lock_guard<std::mutex> lock(g_registry_lock);
  if (g_chunks == nullptr) g_chunks = new std::vector<drt_detector*>();
  if (g_used_in_last == kSlotsPerChunk) {
    g_chunks->reserve(g_chunks->size() + 1);
    g_chunks->push_back(new drt_detector[kSlotsPerChunk]);
    g_used_in_last = 0;
  }
  return &g_chunks->back()[g_used_in_last++];
}

bool is_known_handle(const drt_detector* d) {
  const uintptr_t p = reinterpret_cast<uintptr_t>(d);
  std::lock_guard<std::mutex> lock(g_registry_lock);
  if (g_chunks == nullptr) return false;
  for (size_t i = 0; i < g_chunks->size(); ++i) {
    const uintptr_t base = reinterpret_cast<uintptr_t>((*g_chunks)[i]);
    const size_t used = (i + 1 == g_chunks->size()) ? g_used_in_last : kSlotsPerChunk;
    if (p >= base && p < base + used * sizeof(drt_detector) && (p - base) % sizeof(drt_detector) == 0) return true;
  }
  return false;
}

drt_status check_handle(const drt_detector* d, const char* fn) {
  if (d == nullptr) return set_error(DRT_E_NULL_POINTER, std::string(fn) + ": detector is NULL");
  if (!is_known_handle(d)) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%p", static_cast<const void*>(d));
    return set_error(DRT_E_INVALID_HANDLE,
                     std::string(fn) + ": " + buf + " is not a detector handle created by drt_detector_create");
  }
  if (d->magic != kMagic)
    return set_error(DRT_E_INVALID_HANDLE, std::string(fn) + ": detector handle is corrupted (bad magic)");
  return DRT_OK;
}

// ---- options ---------------------------------------------------------------------------------------------------
const uint32_t kOptionsSize10 = static_cast<uint32_t>(sizeof(drt_options));
const uint32_t kOptionsMaxSize = 4096u;
#define DRT_HAS_FIELD(size, field) \
  (static_cast<size_t>(size) >= offsetof(drt_options, field) + sizeof(static_cast<drt_options*>(nullptr)->field))

void options_defaults(drt_options* o, uint32_t size) {
  if (DRT_HAS_FIELD(size, backend)) o->backend = "auto";
  if (DRT_HAS_FIELD(size, conf)) o->conf = -1.0f;
  if (DRT_HAS_FIELD(size, iou)) o->iou = -1.0f;
  if (DRT_HAS_FIELD(size, max_det)) o->max_det = 0;
  if (DRT_HAS_FIELD(size, threads)) o->threads = 0;
}

bool pixel_format(int fmt, drt::lb::PixelFormat* out) {
  switch (fmt) {
    case DRT_PIXEL_BGR: *out = drt::lb::BGR8; return true;
    case DRT_PIXEL_RGB: *out = drt::lb::RGB8; return true;
    case DRT_PIXEL_GRAY: *out = drt::lb::GRAY8; return true;
    case DRT_PIXEL_BGRA: *out = drt::lb::BGRA8; return true;
    case DRT_PIXEL_RGBA: *out = drt::lb::RGBA8; return true;
  }
  return false;
}

drt_status destroy(drt_detector* d);

}  // namespace

extern "C" {

DRT_API uint32_t DRT_CALL drt_abi_version(void) { return static_cast<uint32_t>(DRT_ABI_VERSION); }

DRT_API const char* DRT_CALL drt_version(void) { return DRT_PACKAGE_VERSION; }

DRT_API const char* DRT_CALL drt_status_str(drt_status status) {
  int value;  // any int may arrive: read the bytes, not the enum (see drt_detect)
  std::memcpy(&value, &status, sizeof value);
  switch (value) {
    case DRT_OK: return "DRT_OK";
    case DRT_E_INVALID_ARGUMENT: return "DRT_E_INVALID_ARGUMENT";
    case DRT_E_NULL_POINTER: return "DRT_E_NULL_POINTER";
    case DRT_E_NOT_FOUND: return "DRT_E_NOT_FOUND";
    case DRT_E_UNSUPPORTED_FORMAT: return "DRT_E_UNSUPPORTED_FORMAT";
    case DRT_E_CAPACITY_TOO_SMALL: return "DRT_E_CAPACITY_TOO_SMALL";
    case DRT_E_RUNTIME: return "DRT_E_RUNTIME";
    case DRT_E_PYTHON: return "DRT_E_PYTHON";
    case DRT_E_INIT_FAILED: return "DRT_E_INIT_FAILED";
    case DRT_E_DESTROYED: return "DRT_E_DESTROYED";
    case DRT_E_INVALID_HANDLE: return "DRT_E_INVALID_HANDLE";
    case DRT_E_OUT_OF_MEMORY: return "DRT_E_OUT_OF_MEMORY";
  }
  return "DRT_E_UNKNOWN";
}

DRT_API const char* DRT_CALL drt_last_error(void) { return g_error.c_str(); }

DRT_API drt_status DRT_CALL drt_options_init_ex(drt_options* opts, uint32_t struct_size) {
  if (opts == nullptr) return set_error(DRT_E_NULL_POINTER, "drt_options_init: opts is NULL");
  if (struct_size < sizeof(uint32_t) || struct_size > kOptionsMaxSize)
    return guarded("drt_options_init_ex", [&]() -> drt_status {
      return set_error(DRT_E_INVALID_ARGUMENT,
                       "drt_options_init_ex: struct_size " + std::to_string(struct_size) + " is not a drt_options size");
    });
  options_defaults(opts, struct_size);
  opts->struct_size = struct_size;
  clear_error();
  return DRT_OK;
}

DRT_API drt_status DRT_CALL drt_options_init(drt_options* opts) { return drt_options_init_ex(opts, kOptionsSize10); }

DRT_API drt_status DRT_CALL drt_init(void) {
  return guarded("drt_init", [] {
    drt::init_onnxruntime();
    clear_error();
    return DRT_OK;
  });
}

DRT_API drt_status DRT_CALL drt_detector_create(const char* model_path, const drt_options* opts, drt_detector** out) {
  if (out == nullptr) return set_error(DRT_E_NULL_POINTER, "drt_detector_create: out is NULL");
  *out = nullptr;
  if (model_path == nullptr) return set_error(DRT_E_NULL_POINTER, "drt_detector_create: model_path is NULL");
  return guarded("drt_detector_create", [&]() -> drt_status {
    drt_options o;
    options_defaults(&o, static_cast<uint32_t>(sizeof(o)));
    if (opts != nullptr) {
      const uint32_t size = opts->struct_size;
      if (size < sizeof(uint32_t) || size > kOptionsMaxSize)
        throw drt::Error(drt::Status::InvalidArgument, "opts->struct_size is " + std::to_string(size) +
                                                           "; initialise the options with drt_options_init() first");
      if (DRT_HAS_FIELD(size, backend) && opts->backend != nullptr) o.backend = opts->backend;
      if (DRT_HAS_FIELD(size, conf)) o.conf = opts->conf;
      if (DRT_HAS_FIELD(size, iou)) o.iou = opts->iou;
      if (DRT_HAS_FIELD(size, max_det)) o.max_det = opts->max_det;
      if (DRT_HAS_FIELD(size, threads)) o.threads = opts->threads;
    }
    if (!drt::valid_utf8(model_path))
      throw drt::Error(drt::Status::InvalidArgument, "model_path is not valid UTF-8");
    if (!drt::valid_utf8(o.backend)) throw drt::Error(drt::Status::InvalidArgument, "backend is not valid UTF-8");
    drt::DetectorOptions dopt;
    dopt.backend = o.backend;
    dopt.conf = o.conf;
    dopt.iou = o.iou;
    dopt.max_det = o.max_det;
    dopt.threads = o.threads;
    std::unique_ptr<drt::Detector> det(new drt::Detector(model_path, dopt));
    std::vector<std::string> names = det->class_names();
    drt_detector* slot = alloc_slot();
    {
      std::lock_guard<std::mutex> lock(slot->state_lock);
      slot->names.swap(names);
      slot->detector = det.release();
      slot->live = true;
      slot->magic = kMagic;
    }
    *out = slot;
    clear_error();
    return DRT_OK;
  });
}

DRT_API drt_status DRT_CALL drt_detect(drt_detector* d, const uint8_t* pixels, int width, int height,
                                       int stride_bytes, drt_pixel_format fmt, drt_detection* out, int capacity,
                                       int* count) {
  static const char* fn = "drt_detect";
  // A C caller may pass any int as the enum: read its bytes (loading an out-of-range enum value is undefined in C++).
  static_assert(sizeof(drt_pixel_format) == sizeof(int), "drt_pixel_format is int-sized");
  int fmt_value;
  std::memcpy(&fmt_value, &fmt, sizeof fmt_value);
  if (count == nullptr) return set_error(DRT_E_NULL_POINTER, "drt_detect: count is NULL");
  *count = 0;
  return guarded(fn, [&]() -> drt_status {
    drt_status s = check_handle(d, fn);
    if (s != DRT_OK) return s;
    if (pixels == nullptr) return set_error(DRT_E_NULL_POINTER, "drt_detect: pixels is NULL");
    if (capacity < 0)
      return set_error(DRT_E_INVALID_ARGUMENT, "drt_detect: capacity " + std::to_string(capacity) + " is negative");
    if (out == nullptr && capacity > 0)
      return set_error(DRT_E_NULL_POINTER, "drt_detect: out is NULL but capacity is " + std::to_string(capacity));
    drt::lb::PixelFormat format;
    if (!pixel_format(fmt_value, &format))
      return set_error(DRT_E_UNSUPPORTED_FORMAT,
                       "drt_detect: pixel format " + std::to_string(fmt_value) +
                           " is not supported; use DRT_PIXEL_BGR (0), DRT_PIXEL_RGB (1), DRT_PIXEL_GRAY (2), "
                           "DRT_PIXEL_BGRA (3) or DRT_PIXEL_RGBA (4)");
    const drt::ImageView view = drt::make_image_view(pixels, width, height, stride_bytes, format);
    std::lock_guard<std::mutex> lock(d->call_lock);
    if (!d->live) return set_error(DRT_E_DESTROYED, "drt_detect: the detector was destroyed");
    std::vector<drt::Detection> dets = d->detector->detect(view);
    const size_t n = dets.size();
    const size_t k = n < static_cast<size_t>(capacity) ? n : static_cast<size_t>(capacity);
    for (size_t i = 0; i < k; ++i) {
      out[i].x1 = dets[i].x1;
      out[i].y1 = dets[i].y1;
      out[i].x2 = dets[i].x2;
      out[i].y2 = dets[i].y2;
      out[i].score = dets[i].score;
      out[i].class_id = dets[i].class_id;
    }
    *count = static_cast<int>(n);
    if (n > static_cast<size_t>(capacity))
      return set_error(DRT_E_CAPACITY_TOO_SMALL,
                       "drt_detect: " + std::to_string(n) + " detections found but capacity is " +
                           std::to_string(capacity) + ": the " + std::to_string(capacity) +
                           " best were written; call again with capacity >= " + std::to_string(n));
    clear_error();
    return DRT_OK;
  });
}

DRT_API drt_status DRT_CALL drt_num_classes(drt_detector* d, int* num_classes) {
  if (num_classes == nullptr) return set_error(DRT_E_NULL_POINTER, "drt_num_classes: num_classes is NULL");
  *num_classes = 0;
  return guarded("drt_num_classes", [&]() -> drt_status {
    drt_status s = check_handle(d, "drt_num_classes");
    if (s != DRT_OK) return s;
    std::lock_guard<std::mutex> lock(d->state_lock);
    if (!d->live) return set_error(DRT_E_DESTROYED, "drt_num_classes: the detector was destroyed");
    *num_classes = static_cast<int>(d->names.size());
    clear_error();
    return DRT_OK;
  });
}

DRT_API drt_status DRT_CALL drt_class_name(drt_detector* d, int class_id, const char** name) {
  if (name == nullptr) return set_error(DRT_E_NULL_POINTER, "drt_class_name: name is NULL");
  *name = nullptr;
  return guarded("drt_class_name", [&]() -> drt_status {
    drt_status s = check_handle(d, "drt_class_name");
    if (s != DRT_OK) return s;
    int n;
    {
      std::lock_guard<std::mutex> lock(d->state_lock);
      if (!d->live) return set_error(DRT_E_DESTROYED, "drt_class_name: the detector was destroyed");
      n = static_cast<int>(d->names.size());
      if (class_id >= 0 && class_id < n) *name = d->names[static_cast<size_t>(class_id)].c_str();
    }
    if (*name == nullptr)
      return set_error(DRT_E_NOT_FOUND, "drt_class_name: class id " + std::to_string(class_id) + " is outside 0.." +
                                            std::to_string(n - 1));
    clear_error();
    return DRT_OK;
  });
}

DRT_API drt_status DRT_CALL drt_detector_destroy(drt_detector* d) {
  if (d == nullptr) {
    clear_error();
    return DRT_OK;
  }
  return guarded("drt_detector_destroy", [&]() -> drt_status { return destroy(d); });
}

}  // extern "C"

namespace {
drt_status destroy(drt_detector* d) {
  drt_status s = check_handle(d, "drt_detector_destroy");
  if (s != DRT_OK) return s;
  drt::Detector* det = nullptr;
  std::vector<std::string> names;
  {
    std::lock_guard<std::mutex> call(d->call_lock);  // waits for a running drt_detect
    {
      std::lock_guard<std::mutex> state(d->state_lock);
      if (!d->live) return set_error(DRT_E_DESTROYED, "drt_detector_destroy: the detector was already destroyed");
      d->live = false;
      det = d->detector;
      d->detector = nullptr;
      names.swap(d->names);
    }
    delete det;  // under call_lock: a waiting drt_detect sees live == false afterwards
  }
  clear_error();
  return DRT_OK;
}
}  // namespace
