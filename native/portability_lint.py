#!/usr/bin/env python3
"""Source checks for the two compilers CI does not have: GCC 7.5 (JetPack 4.6) and MSVC 2019.

Run by native/portability.sh (`make portability`, part of `make test`); stdlib only, Python 3.6+.

GCC 7.5: libstdc++ 7 lacks parts of C++17 and everything of C++20. The lists below follow GCC's published status
tables (libstdc++ manual "C++ 2017" status table, status_cxx2017.xml; https://gcc.gnu.org/projects/cxx-status.html).
A newer g++ in -std=c++17 mode accepts most of these, so only a source check catches them before a Jetson does.
The CUDA sources must also stay C++14 (nvcc of CUDA 10.2 on JetPack 4.6).

MSVC 2019: what `cl /W4 /WX` (DEFECTRT_WERROR=ON) rejects and MinGW-w64 accepts: CRT functions MSVC deprecates
(C4996), POSIX-only headers outside a non-Windows branch, GCC builtins / attributes outside a GCC branch,
alternative tokens (and/or/not need /permissive-), constant conditions (C4127), assignments in conditions (C4706).

A line may opt out with a trailing `// portability-ok: <reason>` comment. Exit status 1 when anything is found.
"""
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# ---- GCC 7.5 -------------------------------------------------------------------------------------------------------
GCC7_HEADERS = {
    "filesystem": "std::filesystem is GCC 8.1 (and needs -lstdc++fs until GCC 9); GCC 7.5 has only "
                  "<experimental/filesystem>: use the helpers in src/util.h",
    "charconv": "<charconv> is GCC 8.1 (integers only; floating point GCC 11)",
    "memory_resource": "<memory_resource> (std::pmr) is GCC 9.1",
    "execution": "parallel algorithms (<execution>) are GCC 9.1 and need TBB",
}
CXX20_HEADERS = ["span", "bit", "concepts", "ranges", "format", "numbers", "version", "compare", "source_location",
                 "coroutine", "barrier", "latch", "semaphore", "stop_token", "syncstream"]
GCC7_PATTERNS = [
    (r"\bstd::(reduce|transform_reduce|inclusive_scan|exclusive_scan)\b", "GCC 9.1 (P0024R2, parallelism TS)"),
    (r"\bhardware_(destructive|constructive)_interference_size\b", "GCC 12"),
    (r"\b(std::)?(aligned_alloc|timespec_get)\s*\(", "C11 library in C++17 (P0063R3) is GCC 9.1"),
    (r"\bstd::(from_chars|to_chars)\b", "GCC 8.1 (integers), GCC 11 (floating point)"),
    (r"\bstd::(filesystem|pmr|execution)::", "not in GCC 7.5's libstdc++ (8.1 / 9.1)"),
    (r"\bconstexpr\s+(const\s+)?std::string_view\b", "constexpr char_traits (P0426R1) is GCC 8.1"),
    (r"\.(starts_with|ends_with)\s*\(", "C++20 member function (GCC 9+)"),
    (r"\bstd::(erase_if|ssize|bit_cast|span|make_unique_for_overwrite|to_array|midpoint|lerp|"
     r"is_constant_evaluated|remove_cvref|remove_cvref_t|type_identity|jthread|format|endian)\b", "C++20 library"),
    (r"\b(consteval|constinit|co_await|co_yield|co_return|char8_t|requires|concept)\b", "C++20 keyword"),
    (r"\busing\s+enum\b", "C++20 `using enum`"),
    (r"<=>", "C++20 three-way comparison"),
    (r"\[\[\s*(likely|unlikely|no_unique_address)\s*\]\]", "C++20 attribute"),
    (r"[{,]\s*\.[A-Za-z_]\w*\s*=", "designated initializer (C++20; GCC 8)"),
    (r"__VA_OPT__", "C++20 __VA_OPT__ (GCC 8)"),
    (r"\[\s*=\s*,\s*this\s*\]", "C++20 [=, this] capture (GCC 8)"),
    (r"\]\s*<\s*(typename|class)\b", "C++20 template lambda (GCC 8)"),
]
# nvcc of CUDA 10.2 (JetPack 4.6) compiles C++14: these files go through it.
CXX14_FILES = ["src/cuda/letterbox_kernel.cu", "src/cuda/letterbox_body.h", "src/cuda/letterbox_cuda.h",
               "src/letterbox_math.h", "tools/check_letterbox_cuda.cu"]
CXX14_PATTERNS = [
    (r"\bif\s+constexpr\b", "C++17 if constexpr"),
    (r"\bauto\s*&{0,2}\s*\[", "C++17 structured binding"),
    (r"\binline\s+(constexpr\s+)?(static\s+)?[A-Za-z_][\w:<>]*\s+[A-Za-z_]\w*\s*(=|\{|;)", "C++17 inline variable"),
    (r"\bnamespace\s+\w+::\w+", "C++17 nested namespace definition"),
    (r"\[\[\s*(nodiscard|maybe_unused|fallthrough)\s*\]\]", "C++17 attribute"),
    (r"#\s*include\s*<(optional|variant|string_view|any|filesystem|charconv)>", "C++17 header"),
    (r"\bstd::(optional|variant|string_view|any|byte|clamp|invoke_result|is_invocable|apply)\b", "C++17 library"),
]

# ---- MSVC 2019 -----------------------------------------------------------------------------------------------------
MSVC_DEPRECATED = (r"(?<![\w.>:])(?:std::)?(sscanf|gmtime|localtime|ctime|asctime|getenv|fopen|freopen|strerror|strcpy|"
                   r"strncpy|strcat|strncat|sprintf|vsprintf|strtok|strdup|fdopen|fileno|unlink|mktemp|tmpnam|"
                   r"getpid|wcscpy|wcsncpy|wcscat)\s*\(")
POSIX_HEADERS = {"unistd.h", "dlfcn.h", "pthread.h", "sys/time.h", "sys/resource.h", "sys/utsname.h", "sys/mman.h",
                 "sys/wait.h", "strings.h", "dirent.h", "libgen.h", "fnmatch.h", "glob.h", "termios.h", "sys/ioctl.h",
                 "sys/socket.h", "poll.h", "sched.h", "semaphore.h", "spawn.h", "getopt.h", "x86intrin.h",
                 "sys/sysinfo.h", "execinfo.h", "malloc.h"}
POSIX_NAMES = (r"\b(ssize_t|strcasecmp|strncasecmp|gettimeofday|usleep|posix_memalign|clock_gettime|realpath|setenv|"
               r"strndup|localtime_r|gmtime_r|dlopen|dlsym|dlerror|pthread_\w+|getrusage|uname)\b")
GNU_ONLY = r"(__attribute__|__builtin_\w+|#\s*pragma\s+GCC|__PRETTY_FUNCTION__|__restrict__|\btypeof\s*\(|__int128)"
ALT_TOKENS = r"(?<![\w.])(and|or|not|bitand|bitor|xor|compl|and_eq|or_eq|not_eq|xor_eq)(?![\w])"

NOT_WINDOWS = re.compile(r"!\s*defined\s*\(?\s*_WIN32\b|^\s*ifndef\s+_WIN32\b|__linux__|__unix__|__unix\b|__APPLE__")
IS_WINDOWS = re.compile(r"(?<!!)\s*defined\s*\(?\s*_WIN32\b|^\s*ifdef\s+_WIN32\b")
GNU_BRANCH = re.compile(r"(?<!!)defined\s*\(?\s*__GNUC__|^\s*ifdef\s+__GNUC__|!\s*defined\s*\(?\s*_MSC_VER|"
                        r"^\s*ifndef\s+_MSC_VER|__GNUC__\s*>")
MSVC_BRANCH = re.compile(r"(?<!!)defined\s*\(?\s*_MSC_VER|^\s*ifdef\s+_MSC_VER")


def strip_code(line, state):
    """The line without comments and string / char literals (state carries /* */ across lines)."""
    out, i, n = [], 0, len(line)
    while i < n:
        if state["block"]:
            end = line.find("*/", i)
            if end < 0:
                return "".join(out)
            state["block"], i = False, end + 2
            continue
        c = line[i]
        if line.startswith("//", i):
            break
        if line.startswith("/*", i):
            state["block"], i = True, i + 2
            continue
        if c in "\"'":
            j = i + 1
            while j < n and line[j] != c:
                j += 2 if line[j] == "\\" else 1
            out.append(c + c)
            i = j + 1
            continue
        out.append(c)
        i += 1
    return "".join(out)


class Branches:
    """#if nesting: is the current line on a path that MSVC / Windows compiles?"""

    def __init__(self):
        self.stack = []  # (condition, in_else)

    def feed(self, code):
        m = re.match(r"\s*#\s*(if|ifdef|ifndef|elif|else|endif)\b(.*)", code)
        if not m:
            return False
        kind, rest = m.group(1), m.group(2)
        if kind in ("if", "ifdef", "ifndef"):
            self.stack.append([(kind + " " + rest) if kind != "if" else rest, False])
        elif kind == "elif" and self.stack:
            self.stack[-1] = [rest, False]
        elif kind == "else" and self.stack:
            self.stack[-1][1] = True
        elif kind == "endif" and self.stack:
            self.stack.pop()
        return True

    def _any(self, when_true, when_else):
        for cond, in_else in self.stack:
            if (not in_else and when_true.search(cond)) or (in_else and when_else.search(cond)):
                return True
        return False

    def excludes_windows(self):
        return self._any(NOT_WINDOWS, IS_WINDOWS)

    def excludes_msvc(self):
        return self.excludes_windows() or self._any(GNU_BRANCH, MSVC_BRANCH)


def sources(root):
    for sub in ("src", "include", "tools", "tests"):
        for folder, _dirs, files in os.walk(os.path.join(root, sub)):
            for name in sorted(files):
                if name.endswith((".cpp", ".h", ".c", ".cu", ".hpp")):
                    yield os.path.join(folder, name)


def check_file(path, rel, problems):
    state = {"block": False}
    branches = Branches()
    cxx14 = rel in CXX14_FILES
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    for no, raw in enumerate(lines, 1):
        if "portability-ok" in raw:
            continue
        code = strip_code(raw, state)
        where = "%s:%d" % (rel, no)
        inc = re.match(r"\s*#\s*include\s*<([^>]+)>", raw)
        if branches.feed(code):
            if re.search(r"#\s*pragma\s+GCC", code) and not branches.excludes_msvc():
                problems.append((where, "msvc", "#pragma GCC outside a GCC-only branch"))
            continue
        if inc:
            header = inc.group(1)
            if header in GCC7_HEADERS:
                problems.append((where, "gcc7", "<%s>: %s" % (header, GCC7_HEADERS[header])))
            if header in CXX20_HEADERS:
                problems.append((where, "gcc7", "<%s> is a C++20 header" % header))
            if header in POSIX_HEADERS and not branches.excludes_windows():
                problems.append((where, "msvc", "<%s> does not exist on MSVC: include it only in a "
                                                "`#if !defined(_WIN32)` branch" % header))
        if cxx14:
            for pattern, why in CXX14_PATTERNS:
                if re.search(pattern, raw if "#" in raw[:3] else code):
                    problems.append((where, "cuda-c++14", why + " in a file nvcc compiles as C++14 (CUDA 10.2)"))
        if code.lstrip().startswith("#"):
            continue
        for pattern, why in GCC7_PATTERNS:
            if re.search(pattern, code):
                problems.append((where, "gcc7", "%s: %s" % (re.search(pattern, code).group(0).strip(), why)))
        m = re.search(MSVC_DEPRECATED, code)
        if m:
            problems.append((where, "msvc", "%s() is deprecated by MSVC (C4996, an error with /W4 /WX); use the "
                                            "_s / _r form behind #if defined(_WIN32) or a C++ alternative"
                             % m.group(1)))
        if not branches.excludes_windows():
            m = re.search(POSIX_NAMES, code)
            if m:
                problems.append((where, "msvc", "%s is POSIX-only: use it in a `#if !defined(_WIN32)` branch"
                                 % m.group(1)))
        if not branches.excludes_msvc():
            m = re.search(GNU_ONLY, code)
            if m:
                problems.append((where, "msvc", "%s is GCC/Clang-only: use it in a `defined(__GNUC__)` branch"
                                 % m.group(1)))
        if not rel.endswith(".c"):
            m = re.search(ALT_TOKENS, code)
            if m:
                problems.append((where, "msvc", "alternative token `%s` needs /permissive- on MSVC 2019: use the "
                                                "operator" % m.group(1)))
        if re.search(r"\bif\s*\(\s*(sizeof\b|true\s*\)|false\s*\)|[01]\s*\))", code):
            problems.append((where, "msvc", "constant condition (C4127 at /W4): use `if constexpr` or #if"))
        if re.search(r"\b(if|while)\s*\(\s*\(\s*[\w.\->\[\]*]+\s*=[^=]", code):
            problems.append((where, "msvc", "assignment in a condition (C4706 at /W4, even in extra parentheses)"))
    return problems


def main(argv):
    root = os.path.abspath(argv[1]) if len(argv) > 1 else HERE
    problems = []
    count = 0
    for path in sources(root):
        count += 1
        check_file(path, os.path.relpath(path, root).replace(os.sep, "/"), problems)
    for where, kind, message in problems:
        print("%s: [%s] %s" % (where, kind, message))
    print("portability_lint: %d files, %d problem(s) (GCC 7.5 library/language, CUDA C++14, MSVC 2019 /W4)"
          % (count, len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
