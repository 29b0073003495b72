"""Errors users can act on. Each message names the file or argument and says what to do.

The hierarchy maps one to one onto the native library's status codes (native/src/status.h `drt::Status`,
and through native/src/capi.cpp onto native/include/defectrt.h `drt_status`), so the Python and the C
callers see the same kinds:

    DefectrtError                      Internal            DRT_E_PYTHON (a bug: report it)
      UserInputError                   (base of the three kinds a user fixes by changing an input)
        InvalidArgument                InvalidArgument     DRT_E_INVALID_ARGUMENT
        NotFound                       NotFound            DRT_E_NOT_FOUND
        UnsupportedFormat              UnsupportedFormat   DRT_E_UNSUPPORTED_FORMAT
      BackendUnavailable               BackendUnavailable  DRT_E_INIT_FAILED
      RuntimeFailure                   RuntimeFailure      DRT_E_RUNTIME
        OutOfMemory                    OutOfMemory         DRT_E_OUT_OF_MEMORY

`UserInputError` is the base of the user-input kinds (raising it directly still means "invalid argument"),
so `except UserInputError` catches a missing file or a bad value; it does not catch a backend that is not
installed (BackendUnavailable), nor a model that failed inside its backend or ran out of memory
(RuntimeFailure, OutOfMemory): those are not the user's input. The CLI prints every DefectrtError as one
line and exits 1. `library_failure` turns a backend library's own exception (ONNX Runtime's pybind classes,
OpenVINO's and TensorRT's RuntimeError, MemoryError) into RuntimeFailure / OutOfMemory.
tests/test_errors.py checks the table above against both headers.
"""


class DefectrtError(Exception):
    """Base class: the CLI prints these as one clear line instead of a traceback."""

    status = "Internal"          # the drt::Status name in native/src/status.h
    c_status = "DRT_E_PYTHON"    # the drt_status name in native/include/defectrt.h


class UserInputError(DefectrtError, ValueError):
    """A file, argument or image the user supplied is unusable (base of InvalidArgument, NotFound,
    UnsupportedFormat; raised directly it is an invalid argument)."""

    status = "InvalidArgument"
    c_status = "DRT_E_INVALID_ARGUMENT"


class InvalidArgument(UserInputError):
    """A value is out of range or malformed: a threshold, a size, an option, a manifest field."""


class NotFound(UserInputError, FileNotFoundError):
    """A path (model, bundle, image, dataset) does not exist or cannot be read; an unknown model name."""

    status = "NotFound"
    c_status = "DRT_E_NOT_FOUND"


class UnsupportedFormat(UserInputError):
    """A file that is not what it must be: no ONNX / engine / bundle, an unknown pixel or image format."""

    status = "UnsupportedFormat"
    c_status = "DRT_E_UNSUPPORTED_FORMAT"


class BackendUnavailable(DefectrtError):
    """A backend cannot be started here: TensorRT / OpenVINO / a CUDA provider not installed or not usable."""

    status = "BackendUnavailable"
    c_status = "DRT_E_INIT_FAILED"


class RuntimeFailure(DefectrtError):
    """The model failed to load or to run inside a backend (an engine that does not deserialize, a failed build)."""

    status = "RuntimeFailure"
    c_status = "DRT_E_RUNTIME"


class OutOfMemory(RuntimeFailure, MemoryError):
    """The device (GPU) or host ran out of memory."""

    status = "OutOfMemory"
    c_status = "DRT_E_OUT_OF_MEMORY"


# What a backend library says when an allocation failed (ONNX Runtime / OpenVINO: std::bad_alloc, "Failed to
# allocate memory"; CUDA: cudaErrorMemoryAllocation, "out of memory"; cuDNN: CUDNN_STATUS_ALLOC_FAILED).
_MEMORY_WORDS = ("out of memory", "outofmemory", "bad_alloc", "failed to allocate", "cannot allocate",
                 "memoryallocation", "alloc_failed", "insufficient memory")
MEMORY_HINT = ("use a smaller batch (--batch / --max-batch) or input size (--imgsz), or close other programs "
               "using that memory")
# Libraries whose exceptions are a backend's failure, not a bug of ours.
_LIBRARIES = ("onnxruntime", "openvino", "tensorrt", "cuda", "pycuda", "polygraphy")


def is_library_failure(exc):
    """Did `exc` come from a backend library (or a failed allocation), rather than from our own code?"""
    module = type(exc).__module__ or ""
    return (isinstance(exc, (MemoryError, RuntimeError))
            or any(module == lib or module.startswith(lib + ".") for lib in _LIBRARIES))


def library_failure(exc, subject, default=None, hint="see the message above; report it if it persists"):
    """The DefectrtError to raise for backend-library exception `exc` while doing `subject` (which names the
    file or model): OutOfMemory when the library says memory ran out, else `default` (a DefectrtError
    instance; RuntimeFailure with `hint` when None). Raise it `from exc`."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    if isinstance(exc, MemoryError) or any(w in str(exc).lower() for w in _MEMORY_WORDS):
        return OutOfMemory("{}: out of memory ({}); {}".format(subject, text or type(exc).__name__, MEMORY_HINT))
    if default is not None:
        return default
    return RuntimeFailure("{}: failed ({}: {}); {}".format(subject, type(exc).__name__, text, hint))


class OutputExistsError(DefectrtError, FileExistsError):
    """An output already exists and --force was not given."""

    status = "InvalidArgument"
    c_status = "DRT_E_INVALID_ARGUMENT"


# drt::Status name -> the one Python class raised for it (and back through `cls.status`).
BY_STATUS = {
    "InvalidArgument": InvalidArgument,
    "NotFound": NotFound,
    "UnsupportedFormat": UnsupportedFormat,
    "BackendUnavailable": BackendUnavailable,
    "RuntimeFailure": RuntimeFailure,
    "OutOfMemory": OutOfMemory,
    "Internal": DefectrtError,
}


def status_of(exc):
    """An exception -> its drt::Status name ("Internal" for anything that is not a DefectrtError)."""
    return exc.status if isinstance(exc, DefectrtError) else "Internal"
