/*
 * defectrt_capi.c - the C ABI of defectrt (defectrt.h) implemented by embedding CPython.
 *
 * Built by `python -m defectrt.capi.build`, which generates drt_build_config.h (the Python home and
 * site-packages folders of the building interpreter, the package version) and links libpython.
 *
 * Structure
 *   - platform layer: mutexes, thread-local error text, environment variables, DLL loading
 *   - handle table: drt_detector slots in chunks that are never freed, so a destroyed or foreign
 *     pointer is recognised without touching freed memory
 *   - interpreter start: once per process (PyConfig, isolated), GIL released afterwards
 *   - entry points: validate arguments in C, then per-handle lock -> GIL -> defectrt.capi._bridge
 *
 * Lock order (never taken the other way round): registry/init lock or handle call lock ->
 * handle state lock -> GIL. No C lock is ever acquired while holding the GIL.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef DRT_BUILDING_LIBRARY
#define DRT_BUILDING_LIBRARY
#endif
#include "defectrt.h"

#ifdef DRT_HAVE_BUILD_CONFIG
#include "drt_build_config.h"
#endif
#ifndef DRT_PACKAGE_VERSION
#define DRT_PACKAGE_VERSION "0.0.0+unknown"
#endif
#ifndef DRT_BUILD_PYTHONHOME
#define DRT_BUILD_PYTHONHOME ""
#endif
#ifndef DRT_BUILD_SITE_DIRS
#define DRT_BUILD_SITE_DIRS ""
#endif

#if defined(_WIN32)
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
#define DRT_PATHSEP ';'
#else
#include <dlfcn.h>
#include <pthread.h>
#include <sys/stat.h>
#define DRT_PATHSEP ':'
#endif

#if PY_VERSION_HEX < 0x03080000
#error "defectrt's C ABI needs Python 3.8 or newer (PyConfig)"
#endif

/* ---- compile-time ABI checks --------------------------------------------------------------- */
typedef char drt_check_detection_size[(sizeof(drt_detection) == 24) ? 1 : -1];
typedef char drt_check_status_size[(sizeof(drt_status) == sizeof(int)) ? 1 : -1];
typedef char drt_check_format_size[(sizeof(drt_pixel_format) == sizeof(int)) ? 1 : -1];

/* ============================================================================================= */
/* platform layer                                                                                */
/* ============================================================================================= */
#if defined(_WIN32)
typedef SRWLOCK drt_mutex;
#define DRT_MUTEX_STATIC_INIT SRWLOCK_INIT
static void drt_mutex_init(drt_mutex* m) { InitializeSRWLock(m); }
static void drt_mutex_lock(drt_mutex* m) { AcquireSRWLockExclusive(m); }
static void drt_mutex_unlock(drt_mutex* m) { ReleaseSRWLockExclusive(m); }
#else
typedef pthread_mutex_t drt_mutex;
#define DRT_MUTEX_STATIC_INIT PTHREAD_MUTEX_INITIALIZER
static void drt_mutex_init(drt_mutex* m) { pthread_mutex_init(m, NULL); }
static void drt_mutex_lock(drt_mutex* m) { pthread_mutex_lock(m); }
static void drt_mutex_unlock(drt_mutex* m) { pthread_mutex_unlock(m); }
#endif

#if defined(_MSC_VER)
#define DRT_TLS __declspec(thread)
#elif defined(__GNUC__) || defined(__clang__)
#define DRT_TLS __thread
#else
#define DRT_TLS _Thread_local
#endif

#define DRT_ERROR_SIZE 2048
static DRT_TLS char tls_error[DRT_ERROR_SIZE];

static void clear_error(void) { tls_error[0] = '\0'; }

static drt_status set_error(drt_status status, const char* fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tls_error, DRT_ERROR_SIZE, fmt, ap);
    va_end(ap);
    tls_error[DRT_ERROR_SIZE - 1] = '\0';
    return status;
}

/* An environment variable as UTF-8 into buf; returns 1 when set and non-empty. */
static int env_utf8(const char* name, char* buf, size_t size)
{
#if defined(_WIN32)
    wchar_t wname[64];
    wchar_t wval[4096];
    DWORD n;
    if (MultiByteToWideChar(CP_UTF8, 0, name, -1, wname, 64) == 0) return 0;
    n = GetEnvironmentVariableW(wname, wval, 4096);
    if (n == 0 || n >= 4096) return 0;
    return WideCharToMultiByte(CP_UTF8, 0, wval, -1, buf, (int)size, NULL, NULL) > 1;
#else
    const char* v = getenv(name);
    if (v == NULL || v[0] == '\0' || strlen(v) >= size) return 0;
    strcpy(buf, v);
    return 1;
#endif
}

static int path_exists(const char* utf8_path, int want_dir)
{
#if defined(_WIN32)
    wchar_t w[4096];
    DWORD attr;
    if (MultiByteToWideChar(CP_UTF8, 0, utf8_path, -1, w, 4096) == 0) return 0;
    attr = GetFileAttributesW(w);
    if (attr == INVALID_FILE_ATTRIBUTES) return 0;
    return want_dir ? (attr & FILE_ATTRIBUTE_DIRECTORY) != 0 : 1;
#else
    struct stat st;
    if (stat(utf8_path, &st) != 0) return 0;
    return want_dir ? S_ISDIR(st.st_mode) : 1;
#endif
}

/* ============================================================================================= */
/* handle table                                                                                  */
/* ============================================================================================= */
#define DRT_MAGIC 0x44525444u /* "DRTD" */
#define SLOT_LIVE 1
#define SLOT_DESTROYED 2
#define SLOTS_PER_CHUNK 64

struct drt_detector {
    uint32_t magic;
    int state;             /* SLOT_LIVE / SLOT_DESTROYED; written under both locks */
    drt_mutex call_lock;   /* serialises drt_detect / destroy on this handle */
    drt_mutex state_lock;  /* guards state + names for the cheap getters */
    PyObject* bridge;      /* defectrt.capi._bridge.CDetector */
    PyObject* detect_fn;   /* its bound .detect */
    int num_classes;
    char** names;          /* num_classes UTF-8 strings, library-owned */
};

static drt_mutex g_registry_lock = DRT_MUTEX_STATIC_INIT;
static struct drt_detector** g_chunks = NULL; /* chunks are never freed, the array may grow */
static size_t g_num_chunks = 0;
static size_t g_chunk_capacity = 0;
static size_t g_used_in_last = SLOTS_PER_CHUNK; /* slots handed out from the newest chunk */

/* A fresh slot (never reused: a stale handle must keep reading as destroyed), or NULL. */
static struct drt_detector* alloc_slot(void)
{
    struct drt_detector* slot = NULL;
    drt_mutex_lock(&g_registry_lock);
    if (g_used_in_last == SLOTS_PER_CHUNK) {
        struct drt_detector* chunk;
        if (g_num_chunks == g_chunk_capacity) {
            size_t cap = g_chunk_capacity ? g_chunk_capacity * 2 : 16;
            struct drt_detector** grown = (struct drt_detector**)realloc(g_chunks, cap * sizeof(*grown));
            if (grown == NULL) goto done;
            g_chunks = grown;
            g_chunk_capacity = cap;
        }
        chunk = (struct drt_detector*)calloc(SLOTS_PER_CHUNK, sizeof(struct drt_detector));
        if (chunk == NULL) goto done;
        g_chunks[g_num_chunks++] = chunk;
        g_used_in_last = 0;
    }
    slot = &g_chunks[g_num_chunks - 1][g_used_in_last++];
    drt_mutex_init(&slot->call_lock);
    drt_mutex_init(&slot->state_lock);
done:
    drt_mutex_unlock(&g_registry_lock);
    return slot;
}

/* 1 when `d` points at a slot this library handed out (live or destroyed); never dereferences d. */
static int is_known_handle(const drt_detector* d)
{
    size_t i;
    int found = 0;
    uintptr_t p = (uintptr_t)d;
    drt_mutex_lock(&g_registry_lock);
    for (i = 0; i < g_num_chunks && !found; ++i) {
        uintptr_t base = (uintptr_t)g_chunks[i];
        size_t used = (i + 1 == g_num_chunks) ? g_used_in_last : SLOTS_PER_CHUNK;
        if (p >= base && p < base + used * sizeof(struct drt_detector) &&
            (p - base) % sizeof(struct drt_detector) == 0)
            found = 1;
    }
    drt_mutex_unlock(&g_registry_lock);
    return found;
}

/* Common handle check: NULL / foreign / destroyed. Does not lock the handle. */
static drt_status check_handle(const drt_detector* d, const char* fn)
{
    if (d == NULL) return set_error(DRT_E_NULL_POINTER, "%s: detector is NULL", fn);
    if (!is_known_handle(d))
        return set_error(DRT_E_INVALID_HANDLE, "%s: %p is not a detector handle created by drt_detector_create",
                         fn, (const void*)d);
    if (d->magic != DRT_MAGIC)
        return set_error(DRT_E_INVALID_HANDLE, "%s: detector handle is corrupted (bad magic)", fn);
    return DRT_OK;
}

/* ============================================================================================= */
/* the interpreter                                                                               */
/* ============================================================================================= */
static drt_mutex g_init_lock = DRT_MUTEX_STATIC_INIT;
static int g_python_state = 0;      /* 0 not started, 1 running, -1 failed for good */
static int g_own_interpreter = 0;   /* we started it (vs. a host that already runs Python) */
static char g_python_error[DRT_ERROR_SIZE];
static PyObject* g_create_fn = NULL; /* defectrt.capi._bridge.create once imported */

/* Python's data symbols (PyExc_*, Py_None's struct...) are never referenced: on Windows
 * python3XY.dll is delay-loaded, and MSVC cannot delay-load data imports. Built-in exception classes
 * are looked up by name instead (tests/test_capi.py checks the library imports only functions). */
static int is_builtin_exception(PyObject* type, const char* name)
{
    PyObject* builtins = PyEval_GetBuiltins(); /* borrowed */
    PyObject* cls = builtins ? PyDict_GetItemString(builtins, name) : NULL; /* borrowed */
    return type != NULL && cls != NULL && PyErr_GivenExceptionMatches(type, cls);
}

/* 1 when the pending exception is (a subclass of) the built-in exception `name`; keeps it pending. */
static int pending_exception_is(const char* name)
{
    PyObject *type, *value, *tb;
    int r;
    PyErr_Fetch(&type, &value, &tb);
    r = is_builtin_exception(type, name);
    PyErr_Restore(type, value, tb);
    return r;
}

/* A Python exception as "Type: message" into buf (clears it); its drt_status or `fallback`. */
static drt_status take_exception(drt_status fallback, char* buf, size_t size)
{
    PyObject *type = NULL, *value = NULL, *tb = NULL, *text = NULL, *attr;
    drt_status status = fallback;
    int from_bridge = 0; /* a CapiError: its text is written for the user, no type prefix */
    const char* tname = "Exception";
    const char* msg = NULL;

    if (!PyErr_Occurred()) {
        snprintf(buf, size, "unknown error (no Python exception set)");
        return fallback;
    }
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (type != NULL && PyType_Check(type)) tname = ((PyTypeObject*)type)->tp_name;
    if (value != NULL) {
        attr = PyObject_GetAttrString(value, "drt_status");
        if (attr != NULL) {
            long v = PyLong_AsLong(attr);
            if (!(v == -1 && PyErr_Occurred()) && v > 0 && v <= DRT_E_OUT_OF_MEMORY) {
                status = (drt_status)v;
                from_bridge = 1;
            }
            Py_DECREF(attr);
        }
        PyErr_Clear();
        text = PyObject_Str(value);
        if (text != NULL) msg = PyUnicode_AsUTF8(text);
        if (msg == NULL) {
            PyErr_Clear();
            msg = "(unprintable exception)";
        }
    }
    if (is_builtin_exception(type, "MemoryError")) status = DRT_E_OUT_OF_MEMORY;
    if (from_bridge)
        snprintf(buf, size, "%s", msg ? msg : tname);
    else
        snprintf(buf, size, "%s: %s", tname, msg ? msg : "");
    Py_XDECREF(text);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    return status;
}

#if defined(_WIN32)
/* defectrt.dll is linked with /DELAYLOAD:pythonXY.dll: load it from the Python home before the
 * first Python call so a missing DLL is an error code, not a failed LoadLibrary of defectrt.dll. */
static int load_python_dll(const char* home, char* err, size_t size)
{
#ifdef DRT_BUILD_PYTHON_DLL
    wchar_t wpath[4096];
    char path[4096];
    if (GetModuleHandleA(DRT_BUILD_PYTHON_DLL) != NULL) return 1;
    if (home != NULL && home[0] != '\0') {
        snprintf(path, sizeof(path), "%s\\%s", home, DRT_BUILD_PYTHON_DLL);
        if (MultiByteToWideChar(CP_UTF8, 0, path, -1, wpath, 4096) != 0 &&
            LoadLibraryExW(wpath, NULL, LOAD_WITH_ALTERED_SEARCH_PATH) != NULL)
            return 1;
    }
    if (LoadLibraryA(DRT_BUILD_PYTHON_DLL) != NULL) return 1;
    snprintf(err, size, "cannot load %s (Windows error %lu): it is neither in the Python home '%s' nor on the "
             "DLL search path; install Python %d.%d (the version defectrt.dll was built with) or set "
             "DEFECTRT_PYTHONHOME to its folder", DRT_BUILD_PYTHON_DLL, (unsigned long)GetLastError(),
             home ? home : "", PY_MAJOR_VERSION, PY_MINOR_VERSION);
    return 0;
#else
    (void)home; (void)err; (void)size;
    return 1;
#endif
}
#endif

/* Python home: DEFECTRT_PYTHONHOME, else the build-time base prefix. Checks it holds a stdlib. */
static int python_home(char* home, size_t size, char* err, size_t errsize)
{
    char probe[4200], probe2[4200];
    const char* origin = "DEFECTRT_PYTHONHOME";
    if (!env_utf8("DEFECTRT_PYTHONHOME", home, size)) {
        origin = "the Python home recorded at build time";
        if (strlen(DRT_BUILD_PYTHONHOME) >= size) return 0;
        strcpy(home, DRT_BUILD_PYTHONHOME);
    }
    if (home[0] == '\0') return 1; /* let Python find itself */
    if (!path_exists(home, 1)) {
        snprintf(err, errsize, "Python home '%s' (%s) does not exist; install Python %d.%d there or set "
                 "DEFECTRT_PYTHONHOME to the folder of a Python %d.%d installation", home, origin,
                 PY_MAJOR_VERSION, PY_MINOR_VERSION, PY_MAJOR_VERSION, PY_MINOR_VERSION);
        return 0;
    }
#if defined(_WIN32)
    snprintf(probe, sizeof(probe), "%s\\Lib\\os.py", home);
    snprintf(probe2, sizeof(probe2), "%s\\python%d%d.zip", home, PY_MAJOR_VERSION, PY_MINOR_VERSION);
#else
    snprintf(probe, sizeof(probe), "%s/lib/python%d.%d/os.py", home, PY_MAJOR_VERSION, PY_MINOR_VERSION);
    snprintf(probe2, sizeof(probe2), "%s/lib/python%d%d.zip", home, PY_MAJOR_VERSION, PY_MINOR_VERSION);
#endif
    if (!path_exists(probe, 0) && !path_exists(probe2, 0)) {
        snprintf(err, errsize, "Python home '%s' (%s) holds no Python %d.%d standard library (neither %s nor %s); "
                 "set DEFECTRT_PYTHONHOME to the folder of a Python %d.%d installation", home, origin,
                 PY_MAJOR_VERSION, PY_MINOR_VERSION, probe, probe2, PY_MAJOR_VERSION, PY_MINOR_VERSION);
        return 0;
    }
    return 1;
}

/* Start the interpreter (called under g_init_lock, only when no interpreter runs). */
static int start_interpreter(const char* home, char* err, size_t size)
{
    PyConfig config;
    PyStatus st;

#if !defined(_WIN32)
    {
        /* A host that dlopen()ed us with RTLD_LOCAL (.NET, LabVIEW, plugins) hides libpython's
         * symbols from the extension modules Python loads later (numpy: "undefined symbol:
         * PyExc_..."). Re-open libpython with RTLD_GLOBAL to make them visible. */
        Dl_info info;
        if (dladdr((void*)&Py_InitializeFromConfig, &info) != 0 && info.dli_fname != NULL)
            (void)dlopen(info.dli_fname, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
    }
#endif
    PyConfig_InitIsolatedConfig(&config); /* ignore PYTHON* variables and the user site of the host */
    config.install_signal_handlers = 0;   /* leave SIGINT & co. to the host application */
    config.site_import = 0;               /* the environment's site dirs are added explicitly */
    config.parse_argv = 0;
    if (home[0] != '\0') {
#if defined(_WIN32)
        wchar_t whome[4096];
        if (MultiByteToWideChar(CP_UTF8, 0, home, -1, whome, 4096) == 0) {
            snprintf(err, size, "Python home '%s' is not valid UTF-8", home);
            PyConfig_Clear(&config);
            return 0;
        }
        st = PyConfig_SetString(&config, &config.home, whome);
#else
        st = PyConfig_SetBytesString(&config, &config.home, home);
#endif
        if (PyStatus_Exception(st)) {
            snprintf(err, size, "cannot configure Python home '%s': %s", home, st.err_msg ? st.err_msg : "?");
            PyConfig_Clear(&config);
            return 0;
        }
    }
    st = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(st)) {
        snprintf(err, size, "cannot start Python %d.%d with home '%s': %s%s%s", PY_MAJOR_VERSION, PY_MINOR_VERSION,
                 home, st.func ? st.func : "", st.func ? ": " : "", st.err_msg ? st.err_msg : "unknown error");
        return 0;
    }
    (void)PyEval_SaveThread(); /* release the GIL: every entry point takes it with PyGILState_Ensure */
    return 1;
}

/* site.addsitedir() for each folder of DEFECTRT_SITE_PACKAGES or the build-time list (GIL held). */
static int add_site_dirs(char* err, size_t size)
{
    static char dirs[8192];
    const char* origin = "DEFECTRT_SITE_PACKAGES";
    char* p;
    PyObject* site;
    if (!env_utf8("DEFECTRT_SITE_PACKAGES", dirs, sizeof(dirs))) {
        origin = "the site-packages folders recorded at build time";
        if (strlen(DRT_BUILD_SITE_DIRS) >= sizeof(dirs)) return 1;
        strcpy(dirs, DRT_BUILD_SITE_DIRS);
    }
    site = PyImport_ImportModule("site");
    if (site == NULL) {
        char text[1024];
        take_exception(DRT_E_INIT_FAILED, text, sizeof(text));
        snprintf(err, size, "cannot import Python's site module: %s", text);
        return 0;
    }
    p = dirs;
    while (*p != '\0') {
        char* end = strchr(p, DRT_PATHSEP);
        if (end != NULL) *end = '\0';
        if (*p != '\0') {
            PyObject* r;
            if (!path_exists(p, 1)) {
                snprintf(err, size, "site-packages folder '%s' (from %s) does not exist; recreate the environment "
                         "defectrt was built in or set DEFECTRT_SITE_PACKAGES", p, origin);
                Py_DECREF(site);
                return 0;
            }
            r = PyObject_CallMethod(site, "addsitedir", "s", p);
            if (r == NULL) {
                char text[1024];
                take_exception(DRT_E_INIT_FAILED, text, sizeof(text));
                snprintf(err, size, "site.addsitedir('%s') failed: %s", p, text);
                Py_DECREF(site);
                return 0;
            }
            Py_DECREF(r);
        }
        if (end == NULL) break;
        p = end + 1;
    }
    Py_DECREF(site);
    return 1;
}

/* Import the bridge (GIL held). */
static int import_bridge(char* err, size_t size)
{
    PyObject* mod = PyImport_ImportModule("defectrt.capi._bridge");
    if (mod == NULL && !g_own_interpreter && pending_exception_is("ImportError")) {
        /* A host process runs its own Python without defectrt on sys.path: add ours, retry. */
        PyErr_Clear();
        if (!add_site_dirs(err, size)) return 0;
        mod = PyImport_ImportModule("defectrt.capi._bridge");
    }
    if (mod == NULL) {
        char text[1024];
        PyObject *sys_path = PySys_GetObject("path"), *repr = NULL; /* borrowed */
        const char* path_text = "?";
        take_exception(DRT_E_INIT_FAILED, text, sizeof(text));
        if (sys_path != NULL) repr = PyObject_Repr(sys_path);
        if (repr != NULL) path_text = PyUnicode_AsUTF8(repr);
        if (path_text == NULL) { PyErr_Clear(); path_text = "?"; }
        snprintf(err, size, "cannot import defectrt into the embedded Python %d.%d: %s (sys.path = %s); install "
                 "defectrt and its runtime dependencies (numpy, opencv-python-headless, onnxruntime) in the "
                 "environment, or set DEFECTRT_SITE_PACKAGES", PY_MAJOR_VERSION, PY_MINOR_VERSION, text, path_text);
        Py_XDECREF(repr);
        return 0;
    }
    g_create_fn = PyObject_GetAttrString(mod, "create");
    Py_DECREF(mod);
    if (g_create_fn == NULL) {
        char text[1024];
        take_exception(DRT_E_INIT_FAILED, text, sizeof(text));
        snprintf(err, size, "defectrt.capi._bridge has no create(): %s", text);
        return 0;
    }
    return 1;
}

static drt_status ensure_python(const char* fn)
{
    char err[DRT_ERROR_SIZE];
    drt_mutex_lock(&g_init_lock);
    err[0] = '\0';
    if (g_python_state == 0) {
        char home[4096];
        home[0] = '\0';
        /* Failures before Py_InitializeFromConfig change nothing: the next call tries again. */
#if defined(_WIN32)
        if (!python_home(home, sizeof(home), err, sizeof(err))) goto fail;
        if (!load_python_dll(home, err, sizeof(err))) goto fail;
#endif
        if (Py_IsInitialized()) {
            g_own_interpreter = 0;
            g_python_state = 1;
        }
#if !defined(_WIN32)
        else if (!python_home(home, sizeof(home), err, sizeof(err))) {
            goto fail;
        }
#endif
        else if (start_interpreter(home, err, sizeof(err))) {
            g_own_interpreter = 1;
            g_python_state = 1;
        } else {
            g_python_state = -1; /* a half-started interpreter cannot be started again */
            snprintf(g_python_error, sizeof(g_python_error), "%s", err);
            goto fail;
        }
        if (g_own_interpreter) {
            PyGILState_STATE gil = PyGILState_Ensure();
            int ok = add_site_dirs(err, sizeof(err));
            PyGILState_Release(gil);
            if (!ok) {
                g_python_state = -1;
                snprintf(g_python_error, sizeof(g_python_error), "%s", err);
                goto fail;
            }
        }
    }
    if (g_python_state < 0) {
        snprintf(err, sizeof(err), "%s", g_python_error);
        goto fail;
    }
    if (g_create_fn == NULL) {
        PyGILState_STATE gil = PyGILState_Ensure();
        int ok = import_bridge(err, sizeof(err));
        PyGILState_Release(gil);
        if (!ok) goto fail; /* the import is retried on the next call */
    }
    drt_mutex_unlock(&g_init_lock);
    return DRT_OK;
fail:
    drt_mutex_unlock(&g_init_lock);
    return set_error(DRT_E_INIT_FAILED, "%s: %s", fn, err);
}

/* ============================================================================================= */
/* entry points                                                                                  */
/* ============================================================================================= */
DRT_API uint32_t DRT_CALL drt_abi_version(void) { return (uint32_t)DRT_ABI_VERSION; }

DRT_API const char* DRT_CALL drt_version(void) { return DRT_PACKAGE_VERSION; }

DRT_API const char* DRT_CALL drt_last_error(void) { return tls_error; }

DRT_API const char* DRT_CALL drt_status_str(drt_status status)
{
    switch (status) {
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

/* The 1.0 layout's size: drt_options_init() writes exactly this many bytes, forever. */
#define DRT_OPTIONS_SIZE_1_0 ((uint32_t)sizeof(drt_options))
#define DRT_OPTIONS_MAX_SIZE 4096u
#define HAS_FIELD(size, field) \
    ((size_t)(size) >= offsetof(drt_options, field) + sizeof(((drt_options*)0)->field))

static void options_defaults(drt_options* o, uint32_t size)
{
    /* only fields that fit in `size` are written */
    if (HAS_FIELD(size, backend)) o->backend = "auto";
    if (HAS_FIELD(size, conf)) o->conf = -1.0f;  /* the model's default */
    if (HAS_FIELD(size, iou)) o->iou = -1.0f;
    if (HAS_FIELD(size, max_det)) o->max_det = 0;
    if (HAS_FIELD(size, threads)) o->threads = 0;
}

DRT_API drt_status DRT_CALL drt_options_init_ex(drt_options* opts, uint32_t struct_size)
{
    if (opts == NULL) return set_error(DRT_E_NULL_POINTER, "drt_options_init: opts is NULL");
    if (struct_size < sizeof(uint32_t) || struct_size > DRT_OPTIONS_MAX_SIZE)
        return set_error(DRT_E_INVALID_ARGUMENT, "drt_options_init_ex: struct_size %lu is not a drt_options size",
                         (unsigned long)struct_size);
    options_defaults(opts, struct_size);
    opts->struct_size = struct_size;
    clear_error();
    return DRT_OK;
}

DRT_API drt_status DRT_CALL drt_options_init(drt_options* opts)
{
    return drt_options_init_ex(opts, DRT_OPTIONS_SIZE_1_0);
}

DRT_API drt_status DRT_CALL drt_init(void)
{
    drt_status s = ensure_python("drt_init");
    if (s == DRT_OK) clear_error();
    return s;
}

static int channels_of(int fmt)
{
    switch (fmt) {
    case DRT_PIXEL_BGR: case DRT_PIXEL_RGB: return 3;
    case DRT_PIXEL_GRAY: return 1;
    case DRT_PIXEL_BGRA: case DRT_PIXEL_RGBA: return 4;
    }
    return 0;
}

static void free_names(char** names, int n)
{
    int i;
    if (names == NULL) return;
    for (i = 0; i < n; ++i) free(names[i]);
    free(names);
}

/* bridge.class_names() -> malloc'd UTF-8 copies (GIL held). */
static drt_status copy_names(PyObject* bridge, char*** out_names, int* out_n, char* err, size_t size)
{
    PyObject *list, *seq;
    Py_ssize_t n, i;
    char** names;
    list = PyObject_CallMethod(bridge, "class_names", NULL);
    if (list == NULL) return take_exception(DRT_E_PYTHON, err, size);
    seq = PySequence_Fast(list, "class_names() must return a sequence");
    Py_DECREF(list);
    if (seq == NULL) return take_exception(DRT_E_PYTHON, err, size);
    n = PySequence_Fast_GET_SIZE(seq);
    names = (char**)calloc(n > 0 ? (size_t)n : 1, sizeof(char*));
    if (names == NULL) {
        Py_DECREF(seq);
        snprintf(err, size, "out of memory");
        return DRT_E_OUT_OF_MEMORY;
    }
    for (i = 0; i < n; ++i) {
        Py_ssize_t len = 0;
        const char* s = PyUnicode_AsUTF8AndSize(PySequence_Fast_GET_ITEM(seq, i), &len);
        if (s == NULL) {
            free_names(names, (int)n);
            Py_DECREF(seq);
            return take_exception(DRT_E_PYTHON, err, size);
        }
        names[i] = (char*)malloc((size_t)len + 1);
        if (names[i] == NULL) {
            free_names(names, (int)n);
            Py_DECREF(seq);
            snprintf(err, size, "out of memory");
            return DRT_E_OUT_OF_MEMORY;
        }
        memcpy(names[i], s, (size_t)len + 1);
    }
    Py_DECREF(seq);
    *out_names = names;
    *out_n = (int)n;
    return DRT_OK;
}

DRT_API drt_status DRT_CALL drt_detector_create(const char* model_path, const drt_options* opts,
                                                drt_detector** out)
{
    drt_options o;
    drt_status status;
    PyGILState_STATE gil;
    PyObject *bridge = NULL, *detect_fn = NULL;
    char** names = NULL;
    int num_classes = 0;
    char err[DRT_ERROR_SIZE];
    struct drt_detector* slot;

    if (out == NULL) return set_error(DRT_E_NULL_POINTER, "drt_detector_create: out is NULL");
    *out = NULL;
    if (model_path == NULL) return set_error(DRT_E_NULL_POINTER, "drt_detector_create: model_path is NULL");
    options_defaults(&o, (uint32_t)sizeof(o));
    o.struct_size = (uint32_t)sizeof(o);
    if (opts != NULL) {
        uint32_t size = opts->struct_size;
        if (size < sizeof(uint32_t) || size > DRT_OPTIONS_MAX_SIZE)
            return set_error(DRT_E_INVALID_ARGUMENT, "drt_detector_create: opts->struct_size is %lu; initialise "
                             "the options with drt_options_init() first", (unsigned long)size);
        if (HAS_FIELD(size, backend) && opts->backend != NULL) o.backend = opts->backend;
        if (HAS_FIELD(size, conf)) o.conf = opts->conf;
        if (HAS_FIELD(size, iou)) o.iou = opts->iou;
        if (HAS_FIELD(size, max_det)) o.max_det = opts->max_det;
        if (HAS_FIELD(size, threads)) o.threads = opts->threads;
    }
    /* negative conf / iou and zero max_det / threads select the default; NaN fails both tests */
    if (!(o.conf < 0.0f || (o.conf >= 0.0f && o.conf <= 1.0f)))
        return set_error(DRT_E_INVALID_ARGUMENT, "drt_detector_create: conf %g is outside 0..1 (negative = default)",
                         (double)o.conf);
    if (!(o.iou < 0.0f || (o.iou >= 0.0f && o.iou <= 1.0f)))
        return set_error(DRT_E_INVALID_ARGUMENT, "drt_detector_create: iou %g is outside 0..1 (negative = default)",
                         (double)o.iou);
    if (o.max_det < 0)
        return set_error(DRT_E_INVALID_ARGUMENT, "drt_detector_create: max_det %d must be >= 1 (0 = default)",
                         (int)o.max_det);
    if (o.threads < 0)
        return set_error(DRT_E_INVALID_ARGUMENT, "drt_detector_create: threads %d must be >= 1 (0 = default)",
                         (int)o.threads);

    status = ensure_python("drt_detector_create");
    if (status != DRT_OK) return status;

    gil = PyGILState_Ensure();
    bridge = PyObject_CallFunction(g_create_fn, "ssddii", model_path, o.backend, (double)o.conf, (double)o.iou,
                                   (int)o.max_det, (int)o.threads);
    if (bridge == NULL) {
        /* A string that is not UTF-8 fails in argument building with UnicodeDecodeError. */
        drt_status fallback = pending_exception_is("UnicodeDecodeError") ? DRT_E_INVALID_ARGUMENT : DRT_E_RUNTIME;
        status = take_exception(fallback, err, sizeof(err));
        PyGILState_Release(gil);
        return set_error(status, "drt_detector_create: %s", err);
    }
    detect_fn = PyObject_GetAttrString(bridge, "detect");
    status = detect_fn ? copy_names(bridge, &names, &num_classes, err, sizeof(err))
                       : take_exception(DRT_E_PYTHON, err, sizeof(err));
    if (status != DRT_OK) {
        Py_XDECREF(detect_fn);
        Py_DECREF(bridge);
        PyGILState_Release(gil);
        return set_error(status, "drt_detector_create: %s", err);
    }
    PyGILState_Release(gil);

    slot = alloc_slot();
    if (slot == NULL) {
        gil = PyGILState_Ensure();
        Py_DECREF(detect_fn);
        Py_DECREF(bridge);
        PyGILState_Release(gil);
        free_names(names, num_classes);
        return set_error(DRT_E_OUT_OF_MEMORY, "drt_detector_create: out of memory for the handle table");
    }
    slot->bridge = bridge;
    slot->detect_fn = detect_fn;
    slot->names = names;
    slot->num_classes = num_classes;
    slot->state = SLOT_LIVE;
    slot->magic = DRT_MAGIC;
    *out = slot;
    clear_error();
    return DRT_OK;
}

DRT_API drt_status DRT_CALL drt_detect(drt_detector* d, const uint8_t* pixels, int width, int height,
                                       int stride_bytes, drt_pixel_format fmt, drt_detection* out, int capacity,
                                       int* count)
{
    static const char* fn = "drt_detect";
    drt_status status;
    int channels;
    long long row, stride, nbytes;
    PyGILState_STATE gil;
    PyObject *view, *result, *released;
    char err[DRT_ERROR_SIZE];

    if (count == NULL) return set_error(DRT_E_NULL_POINTER, "%s: count is NULL", fn);
    *count = 0;
    status = check_handle(d, fn);
    if (status != DRT_OK) return status;
    if (pixels == NULL) return set_error(DRT_E_NULL_POINTER, "%s: pixels is NULL", fn);
    if (capacity < 0) return set_error(DRT_E_INVALID_ARGUMENT, "%s: capacity %d is negative", fn, capacity);
    if (out == NULL && capacity > 0)
        return set_error(DRT_E_NULL_POINTER, "%s: out is NULL but capacity is %d", fn, capacity);
    if (width <= 0 || height <= 0)
        return set_error(DRT_E_INVALID_ARGUMENT, "%s: image size %d x %d; width and height must be >= 1", fn,
                         width, height);
    channels = channels_of((int)fmt);
    if (channels == 0)
        return set_error(DRT_E_UNSUPPORTED_FORMAT, "%s: pixel format %d is not supported; use DRT_PIXEL_BGR (0), "
                         "DRT_PIXEL_RGB (1), DRT_PIXEL_GRAY (2), DRT_PIXEL_BGRA (3) or DRT_PIXEL_RGBA (4)", fn,
                         (int)fmt);
    row = (long long)width * channels;
    stride = stride_bytes == 0 ? row : (long long)stride_bytes;
    if (stride < row)
        return set_error(DRT_E_INVALID_ARGUMENT, "%s: stride_bytes %d is smaller than a row (%d pixels x %d bytes = "
                         "%lld); bottom-up (negative stride) images must be flipped first", fn, stride_bytes, width,
                         channels, row);
    nbytes = stride * (height - 1) + row;
    if ((unsigned long long)nbytes > (unsigned long long)PY_SSIZE_T_MAX)
        return set_error(DRT_E_INVALID_ARGUMENT, "%s: an image of %lld bytes is too large for this platform", fn, nbytes);

    drt_mutex_lock(&d->call_lock);
    if (d->state != SLOT_LIVE) {
        drt_mutex_unlock(&d->call_lock);
        return set_error(DRT_E_DESTROYED, "%s: the detector was destroyed", fn);
    }
    gil = PyGILState_Ensure();
    view = PyMemoryView_FromMemory((char*)pixels, (Py_ssize_t)nbytes, PyBUF_READ);
    if (view == NULL) {
        status = take_exception(DRT_E_PYTHON, err, sizeof(err));
        goto unlock;
    }
    result = PyObject_CallFunction(d->detect_fn, "Oiiii", view, width, height, (int)stride, (int)fmt);
    if (result == NULL) status = take_exception(DRT_E_RUNTIME, err, sizeof(err));
    /* Invalidate the view of the caller's memory; fails if anything still holds a buffer of it. */
    released = PyObject_CallMethod(view, "release", NULL);
    Py_DECREF(view);
    if (released == NULL) {
        Py_XDECREF(result);
        result = NULL;
        status = take_exception(DRT_E_PYTHON, err, sizeof(err));
        goto unlock;
    }
    Py_DECREF(released);
    if (result == NULL) goto unlock;
    if (!PyBytes_Check(result) || PyBytes_GET_SIZE(result) % (Py_ssize_t)sizeof(drt_detection) != 0) {
        snprintf(err, sizeof(err), "internal error: the bridge returned %s, not drt_detection bytes",
                 Py_TYPE(result)->tp_name);
        status = DRT_E_PYTHON;
    } else {
        Py_ssize_t n = PyBytes_GET_SIZE(result) / (Py_ssize_t)sizeof(drt_detection);
        Py_ssize_t k = n < capacity ? n : capacity;
        if (k > 0) memcpy(out, PyBytes_AS_STRING(result), (size_t)k * sizeof(drt_detection));
        *count = (int)n;
        if (n > capacity) {
            snprintf(err, sizeof(err), "%d detections found but capacity is %d: the %d best were written; call "
                     "again with capacity >= %d", (int)n, capacity, capacity, (int)n);
            status = DRT_E_CAPACITY_TOO_SMALL;
        } else {
            status = DRT_OK;
        }
    }
    Py_DECREF(result);
unlock:
    PyGILState_Release(gil);
    drt_mutex_unlock(&d->call_lock);
    if (status == DRT_OK) {
        clear_error();
        return DRT_OK;
    }
    return set_error(status, "%s: %s", fn, err);
}

DRT_API drt_status DRT_CALL drt_num_classes(drt_detector* d, int* num_classes)
{
    drt_status status;
    if (num_classes == NULL) return set_error(DRT_E_NULL_POINTER, "drt_num_classes: num_classes is NULL");
    *num_classes = 0;
    status = check_handle(d, "drt_num_classes");
    if (status != DRT_OK) return status;
    drt_mutex_lock(&d->state_lock);
    if (d->state != SLOT_LIVE) {
        drt_mutex_unlock(&d->state_lock);
        return set_error(DRT_E_DESTROYED, "drt_num_classes: the detector was destroyed");
    }
    *num_classes = d->num_classes;
    drt_mutex_unlock(&d->state_lock);
    clear_error();
    return DRT_OK;
}

DRT_API drt_status DRT_CALL drt_class_name(drt_detector* d, int class_id, const char** name)
{
    drt_status status;
    int n;
    if (name == NULL) return set_error(DRT_E_NULL_POINTER, "drt_class_name: name is NULL");
    *name = NULL;
    status = check_handle(d, "drt_class_name");
    if (status != DRT_OK) return status;
    drt_mutex_lock(&d->state_lock);
    if (d->state != SLOT_LIVE) {
        drt_mutex_unlock(&d->state_lock);
        return set_error(DRT_E_DESTROYED, "drt_class_name: the detector was destroyed");
    }
    n = d->num_classes;
    if (class_id >= 0 && class_id < n) *name = d->names[class_id];
    drt_mutex_unlock(&d->state_lock);
    if (*name == NULL)
        return set_error(DRT_E_NOT_FOUND, "drt_class_name: class id %d is outside 0..%d", class_id, n - 1);
    clear_error();
    return DRT_OK;
}

DRT_API drt_status DRT_CALL drt_detector_destroy(drt_detector* d)
{
    drt_status status;
    PyObject *bridge, *detect_fn;
    char** names;
    int n;
    if (d == NULL) {
        clear_error();
        return DRT_OK;
    }
    status = check_handle(d, "drt_detector_destroy");
    if (status != DRT_OK) return status;
    drt_mutex_lock(&d->call_lock); /* waits for a running drt_detect */
    drt_mutex_lock(&d->state_lock);
    if (d->state != SLOT_LIVE) {
        drt_mutex_unlock(&d->state_lock);
        drt_mutex_unlock(&d->call_lock);
        return set_error(DRT_E_DESTROYED, "drt_detector_destroy: the detector was already destroyed");
    }
    d->state = SLOT_DESTROYED;
    bridge = d->bridge;
    detect_fn = d->detect_fn;
    names = d->names;
    n = d->num_classes;
    d->bridge = NULL;
    d->detect_fn = NULL;
    d->names = NULL;
    d->num_classes = 0;
    drt_mutex_unlock(&d->state_lock);
    {
        PyGILState_STATE gil = PyGILState_Ensure();
        Py_XDECREF(detect_fn);
        Py_XDECREF(bridge);
        PyGILState_Release(gil);
    }
    free_names(names, n);
    drt_mutex_unlock(&d->call_lock);
    clear_error();
    return DRT_OK;
}
