"""native/portability_lint.py: the GCC 7.5 / CUDA C++14 / MSVC 2019 source checks of `make portability`.

The compile checks themselves (MinGW-w64, g++ -Wpedantic, clang-14) run in `make portability`; these tests show
the lint passes on native/ and catches each kind of problem it is there for.
"""
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINT = os.path.join(ROOT, "native", "portability_lint.py")


def run_lint(tree):
    return subprocess.run([sys.executable, LINT, str(tree)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=60)


def write(root, rel, text):
    path = os.path.join(str(root), rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(textwrap.dedent(text))


def test_native_sources_pass():
    r = run_lint(os.path.join(ROOT, "native"))
    assert r.returncode == 0, r.stdout
    assert "0 problem(s)" in r.stdout


@pytest.mark.parametrize("rel,source,expected", [
    ("src/a.cpp", "#include <filesystem>\n", "[gcc7] <filesystem>"),
    ("src/a.cpp", "#include <charconv>\n", "[gcc7] <charconv>"),
    ("src/a.cpp", "#include <span>\n", "C++20 header"),
    ("src/a.cpp", "double s = std::reduce(v.begin(), v.end());\n", "GCC 9.1"),
    ("src/a.cpp", "struct P { int x; }; P p{.x = 1};\n", "designated initializer"),
    ("src/a.cpp", "constexpr std::string_view k = \"x\";\n", "P0426R1"),
    ("src/cuda/letterbox_body.h", "template <class T> void f() { if constexpr (sizeof(T) == 4) {} }\n",
     "[cuda-c++14] C++17 if constexpr"),
    ("src/a.cpp", "const char* p = std::getenv(\"HOME\");\n", "getenv() is deprecated by MSVC"),
    ("tools/t.cpp", "std::tm* t = std::gmtime(&now);\n", "gmtime() is deprecated by MSVC"),
    ("src/a.cpp", "#include <dlfcn.h>\n", "<dlfcn.h> does not exist on MSVC"),
    ("src/a.cpp", "int n = __builtin_popcount(x);\n", "__builtin_popcount is GCC/Clang-only"),
    ("src/a.cpp", "bool b = x and y;\n", "alternative token `and`"),
    ("src/a.cpp", "void f() { if (sizeof(long) == 8) g(); }\n", "C4127"),
    ("src/a.cpp", "void f() { while ((n = next()) ) g(); }\n", "C4706"),
    ("src/a.cpp", "ssize_t n = 0;\n", "ssize_t is POSIX-only"),
])
def test_lint_finds(tmp_path, rel, source, expected):
    write(tmp_path, rel, source)
    r = run_lint(tmp_path)
    assert r.returncode == 1, r.stdout
    assert expected in r.stdout, r.stdout


def test_lint_respects_branches_comments_and_opt_out(tmp_path):
    write(tmp_path, "src/ok.cpp", """\
        #if defined(_WIN32)
        #include <windows.h>
        #else
        #include <dlfcn.h>
        #include <unistd.h>
        static void* open_it(const char* p) { return dlopen(p, 0); }
        #endif
        #if defined(__GNUC__)
        #define LIKELY(x) __builtin_expect(!!(x), 1)
        #endif
        // getenv() and <filesystem> in a comment are not code
        const char* s = "sscanf(and) <filesystem>";
        const char* h = std::getenv("X");  // portability-ok: read once at start-up
        bool ok = value.contains("key");   // nlohmann::json::contains, not C++20's
        """)
    r = run_lint(tmp_path)
    assert r.returncode == 0, r.stdout
