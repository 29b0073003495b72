/*
 * defectrt.h - the C ABI of defectrt: run a defectrt defect detector (ONNX / TensorRT engine /
 * deployment bundle) from C, C++, C# (P/Invoke), LabVIEW (Call Library Function Node) or anything
 * else that can call a plain C function in a shared library.
 *
 *   Linux:   libdefectrt.so      Windows: defectrt.dll (+ defectrt.lib import library)
 *   Build:   cmake -S native -B build/native -DCMAKE_BUILD_TYPE=Release && cmake --build build/native -j
 *            (see native/README.md). The library is native C++: it needs ONNX Runtime's shared library
 *            (and TensorRT's where built with it), never Python.
 *
 * SPDX-License-Identifier: Apache-2.0
 *
 * ---------------------------------------------------------------------------------------------
 * Conventions
 * ---------------------------------------------------------------------------------------------
 * - Plain C (C89 with <stdint.h>), no C++ types, no callbacks, cdecl calling convention on every
 *   platform (DRT_CALL). Every struct is plain data with natural alignment, no packing pragmas.
 * - Every function that can fail returns a drt_status (an int-sized enum; DRT_OK == 0). On failure
 *   drt_last_error() gives a readable English message for the calling thread.
 * - Output parameters are written only by the call that owns them; on failure they hold a defined
 *   "empty" value (NULL handle, count 0, NULL string) unless the function says otherwise.
 *
 * Ownership
 * - drt_detector* handles are created by drt_detector_create() and released by
 *   drt_detector_destroy(). The caller owns the handle; the library owns what is behind it.
 * - Pixel buffers and drt_detection arrays are owned by the caller. The library reads the pixels
 *   only during drt_detect() (no copy is kept afterwards) and writes at most `capacity` detections.
 * - Strings returned by the library are owned by the library and must not be freed:
 *     drt_version(), drt_status_str()       static, valid forever;
 *     drt_class_name()                       valid until drt_detector_destroy() of that handle;
 *     drt_last_error()                       thread-local, valid until the next drt_* call on the
 *                                            same thread (copy it if you need it longer).
 *   All strings are NUL-terminated UTF-8.
 *
 * Thread safety
 * - All functions may be called from any thread, and no function needs to be called from the
 *   thread that created a handle.
 * - drt_detect() on ONE handle from several threads is safe: calls are serialised by a per-handle
 *   lock (one runs, the others wait). For parallelism create one handle per thread.
 * - Different handles run fully in parallel (pre-processing, inference and post-processing).
 * - drt_num_classes() / drt_class_name() do not wait for a running drt_detect() on the same handle.
 * - drt_detector_destroy() may be called while other threads use the handle: it waits for a running
 *   drt_detect() to finish; afterwards every call with that handle returns DRT_E_DESTROYED. Strings
 *   obtained from drt_class_name() become invalid at that moment, so do not destroy a handle that
 *   another thread still reads names from.
 * - Destroyed handles are detected, never dereferenced as freed memory: a handle points into a table
 *   that is never freed (about 128 bytes kept per drt_detector_create() for the life of the
 *   process). A pointer that never was a handle gives DRT_E_INVALID_HANDLE.
 *
 * Process-wide state
 * - ONNX Runtime's environment (OrtEnv) is created on the first drt_init() or drt_detector_create()
 *   and lives until the process exits. Nothing else is global apart from the handle table.
 * - Library 1.0 embedded CPython; since 1.1 the library is native and links no Python. The status
 *   values DRT_E_PYTHON and DRT_E_INIT_FAILED keep their numbers with the meanings given below.
 *
 * ABI versioning
 * - DRT_ABI_VERSION_MAJOR changes when a function signature, struct layout or enum value changes
 *   incompatibly; DRT_ABI_VERSION_MINOR when something is only added (new functions, new enum
 *   values, new fields at the END of drt_options). Check at run time:
 *       if ((drt_abi_version() >> 16) != DRT_ABI_VERSION_MAJOR) { ...refuse to run... }
 */
#ifndef DEFECTRT_H
#define DEFECTRT_H

#include <stddef.h>
#include <stdint.h>

/* ---- export / calling-convention macros ---------------------------------------------------- */
#if defined(_WIN32) || defined(__CYGWIN__)
#  define DRT_CALL __cdecl
#  if defined(DRT_BUILDING_LIBRARY)
#    define DRT_API __declspec(dllexport)
#  elif defined(DRT_STATIC)
#    define DRT_API
#  else
#    define DRT_API __declspec(dllimport)
#  endif
#else
#  define DRT_CALL
#  if defined(__GNUC__) && __GNUC__ >= 4
#    define DRT_API __attribute__((visibility("default")))
#  else
#    define DRT_API
#  endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- versions ------------------------------------------------------------------------------ */
#define DRT_ABI_VERSION_MAJOR 1
#define DRT_ABI_VERSION_MINOR 1
/* (major << 16) | minor, the same encoding drt_abi_version() returns. */
#define DRT_ABI_VERSION ((DRT_ABI_VERSION_MAJOR << 16) | DRT_ABI_VERSION_MINOR)

/* The ABI version the library was built with: (major << 16) | minor. Never fails, starts nothing. */
DRT_API uint32_t DRT_CALL drt_abi_version(void);

/* The defectrt package version the library was built from, e.g. "0.1.0". Static string. */
DRT_API const char* DRT_CALL drt_version(void);

/* ---- status codes -------------------------------------------------------------------------- */
/* Values are part of the ABI: they are never renumbered, new ones are only appended. */
typedef enum drt_status {
    DRT_OK = 0,
    DRT_E_INVALID_ARGUMENT = 1,    /* a value is out of range (size, stride, threshold, option) */
    DRT_E_NULL_POINTER = 2,        /* a required pointer argument is NULL (handle included) */
    DRT_E_NOT_FOUND = 3,           /* the model path does not exist / cannot be read; class id unknown */
    DRT_E_UNSUPPORTED_FORMAT = 4,  /* unknown pixel format, or a model file that is no ONNX/engine/bundle */
    DRT_E_CAPACITY_TOO_SMALL = 5,  /* more detections than `capacity`; *count says how many */
    DRT_E_RUNTIME = 6,             /* the model failed to load or to run (backend error, bad model) */
    DRT_E_PYTHON = 7,              /* an internal error of the library (a bug: report it); the name is kept
                                      from ABI 1.0, which embedded Python */
    DRT_E_INIT_FAILED = 8,         /* a backend is unavailable: ONNX Runtime could not be started, or the
                                      model needs TensorRT and the library was built without it */
    DRT_E_DESTROYED = 9,           /* the handle was already passed to drt_detector_destroy() */
    DRT_E_INVALID_HANDLE = 10,     /* the pointer is not a handle this library created */
    DRT_E_OUT_OF_MEMORY = 11
} drt_status;

/* The enum name of a status ("DRT_E_NOT_FOUND"), or "DRT_E_UNKNOWN". Static string. */
DRT_API const char* DRT_CALL drt_status_str(drt_status status);

/* Message of the last failed call on THIS thread ("" after a successful call). Thread-local,
 * library-owned, valid until the next drt_* call on this thread. Never NULL. */
DRT_API const char* DRT_CALL drt_last_error(void);

/* ---- pixel formats ------------------------------------------------------------------------- */
/* 8 bits per channel, interleaved, rows top to bottom. Values are part of the ABI. */
typedef enum drt_pixel_format {
    DRT_PIXEL_BGR = 0,   /* 3 bytes per pixel, OpenCV's default order */
    DRT_PIXEL_RGB = 1,   /* 3 bytes per pixel */
    DRT_PIXEL_GRAY = 2,  /* 1 byte per pixel (replicated to 3 channels for the model) */
    DRT_PIXEL_BGRA = 3,  /* 4 bytes per pixel, alpha ignored (Windows GDI / .NET Format32bppArgb) */
    DRT_PIXEL_RGBA = 4   /* 4 bytes per pixel, alpha ignored */
} drt_pixel_format;

/* ---- detector options ---------------------------------------------------------------------- */
/* Always initialise with drt_options_init() (or drt_options_init_ex()), then change fields.
 * `struct_size` tells the library which fields the caller knows: fields added in later minor
 * versions are appended at the end, and a field outside `struct_size` takes its default. */
typedef struct drt_options {
    uint32_t struct_size;  /* bytes of this struct the caller filled in; set by drt_options_init */
    const char* backend;   /* "auto" (default; NULL means "auto"), "onnxruntime" or "tensorrt";
                              the string is only read during drt_detector_create() */
    float conf;            /* confidence threshold 0..1; negative (the default, -1) = the model's:
                              a bundle's stored threshold, else 0.25 */
    float iou;             /* NMS IoU threshold 0..1; negative (default) = the bundle's, else 0.45 */
    int32_t max_det;       /* most detections per image after NMS, >= 1; 0 (default) = the
                              bundle's, else 300 */
    int32_t threads;       /* CPU threads for ONNX Runtime, >= 1; 0 (default) = its default */
} drt_options;

/* Fill *opts with the defaults of ABI 1.0 and set struct_size = sizeof(the 1.0 struct). Writes
 * exactly that many bytes, whatever the library's minor version is. Returns DRT_E_NULL_POINTER
 * for NULL. */
DRT_API drt_status DRT_CALL drt_options_init(drt_options* opts);

/* Like drt_options_init() for a caller whose drt_options has `struct_size` bytes (pass
 * sizeof(drt_options) as the caller compiled it): writes the defaults of every field the library
 * knows that fits in struct_size bytes, and sets opts->struct_size = struct_size. */
DRT_API drt_status DRT_CALL drt_options_init_ex(drt_options* opts, uint32_t struct_size);

/* ---- detections ---------------------------------------------------------------------------- */
/* 24 bytes, no padding. Corners in pixels of the image given to drt_detect() (continuous
 * coordinates: (0, 0) is the top-left corner of the first pixel, (width, height) the bottom-right
 * corner of the last), clipped to the image; the same numbers as Detections.boxes in Python. */
typedef struct drt_detection {
    float x1, y1, x2, y2;
    float score;       /* confidence, 0..1 */
    int32_t class_id;  /* 0 .. drt_num_classes()-1; drt_class_name() gives its name */
} drt_detection;

/* ---- detector ------------------------------------------------------------------------------ */
typedef struct drt_detector drt_detector; /* opaque */

/* Start ONNX Runtime's environment now, instead of on the first drt_detector_create(). Optional;
 * useful to fail early at application start. Idempotent. DRT_E_INIT_FAILED when ONNX Runtime
 * cannot be started (its message says why); retried on the next call. */
DRT_API drt_status DRT_CALL drt_init(void);

/* Load a model and create a detector.
 *   model_path  UTF-8 path: an .onnx file, a TensorRT engine (.engine/.plan/.trt), a bundle folder,
 *               ("demo:NAME" names a demo bundle of the Python package: the native library does
 *               not ship them and returns DRT_E_NOT_FOUND; pass the bundle's folder)
 *   opts        NULL for defaults, else initialised with drt_options_init()
 *   out         receives the handle; *out = NULL on failure
 * Errors: DRT_E_NULL_POINTER (model_path or out NULL), DRT_E_NOT_FOUND (no such file/folder),
 *   DRT_E_UNSUPPORTED_FORMAT (not a model the runtime reads), DRT_E_INVALID_ARGUMENT (bad option),
 *   DRT_E_RUNTIME (the backend cannot load it), DRT_E_INIT_FAILED (backend unavailable),
 *   DRT_E_OUT_OF_MEMORY. */
DRT_API drt_status DRT_CALL drt_detector_create(const char* model_path, const drt_options* opts,
                                                drt_detector** out);

/* Detect defects in one image.
 *   pixels        first byte of the top row; at least stride_bytes*(height-1) + width*channels bytes
 *   width,height  image size in pixels, >= 1
 *   stride_bytes  bytes from one row to the next, >= width*channels; 0 = width*channels (packed)
 *   fmt           layout of the pixels (drt_pixel_format)
 *   out           caller-owned array of `capacity` detections (may be NULL when capacity == 0)
 *   capacity      number of elements of `out`, >= 0
 *   count         receives the number of detections found (always written when count != NULL)
 * Detections are sorted by score, highest first. When more than `capacity` were found the call
 * returns DRT_E_CAPACITY_TOO_SMALL, fills out[0 .. capacity-1] with the `capacity` best ones and
 * sets *count to the number found, so that a second call with capacity >= *count gets them all
 * (capacity == 0 is therefore a way to ask for the count). No detection is not an error
 * (DRT_OK, *count = 0). The buffer is not kept after the call returns.
 * Errors: DRT_E_NULL_POINTER, DRT_E_INVALID_ARGUMENT, DRT_E_UNSUPPORTED_FORMAT, DRT_E_DESTROYED,
 *   DRT_E_INVALID_HANDLE, DRT_E_CAPACITY_TOO_SMALL, DRT_E_RUNTIME, DRT_E_OUT_OF_MEMORY. */
DRT_API drt_status DRT_CALL drt_detect(drt_detector* detector, const uint8_t* pixels, int width,
                                       int height, int stride_bytes, drt_pixel_format fmt,
                                       drt_detection* out, int capacity, int* count);

/* Number of classes the model detects; *num_classes = 0 on failure. */
DRT_API drt_status DRT_CALL drt_num_classes(drt_detector* detector, int* num_classes);

/* Name of a class ("scratch"), library-owned, valid until drt_detector_destroy() of `detector`.
 * DRT_E_NOT_FOUND for a class id outside 0 .. num_classes-1 (*name = NULL). */
DRT_API drt_status DRT_CALL drt_class_name(drt_detector* detector, int class_id, const char** name);

/* Release a detector. NULL is accepted (DRT_OK, nothing happens). Waits for a drt_detect() running
 * on the handle in another thread. Destroying twice returns DRT_E_DESTROYED and does nothing else. */
DRT_API drt_status DRT_CALL drt_detector_destroy(drt_detector* detector);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* DEFECTRT_H */
