#!/usr/bin/env bash
# Portability checks of native/ for the compilers CI has not got (`make portability`, part of `make test`):
#   lint     native/portability_lint.py: GCC 7.5 libstdc++ gaps / C++20 use, C++14 in CUDA files, MSVC /W4 traps.
#   windows  MinGW-w64 cross build of native/ with CMake (native/cmake/mingw-w64-x86_64.cmake), -Werror plus
#            -Wpedantic -Wshadow -Wconversion (proxies of MSVC's C4456-C4459 / C4244 / C4267): libdefectrt's every core
#            source for _WIN32, defectrt.dll linked against an import library of onnxruntime.dll made from a .def
#            with the one entry point the library calls (OrtGetApiBase), the C++ tests, defectrt_bench.exe, the C
#            smoke test; the DLL must export exactly the drt_* functions of defectrt.h and import onnxruntime.dll;
#            defectrt.h in C89 / C++98 (dllimport, dllexport and DRT_STATIC); examples/c linked against the DLL;
#            the TensorRT backend's _WIN32 code (syntax only, with ../shared's TensorRT headers and CUDA's).
#   gcc7     g++ -std=c++17 -Wpedantic -Werror over every C++ source (the strictest proxy of GCC 7.5 here; the lint
#            covers the library side).
#   clang    clang++-14 CMake build of native/ with -Werror -Wpedantic.
#   aarch64  the core's C++ tests (letterbox incl. its NEON pass, NMS, decoding, bundles) cross-built for AArch64 (the
#            Jetsons' CPU) with aarch64-linux-gnu-g++ -O3 -Werror and run under qemu-user (correctness, not speed).
# Installs g++-mingw-w64-x86-64-posix, clang-14, g++-aarch64-linux-gnu and qemu-user with apt-get when missing
# (root + apt-get only). A part whose
# compiler or inputs are absent prints "SKIPPED: <reason>"; the script fails when any part that ran fails.
# Nothing runs the Windows binaries (no Windows / wine here): what is checked is that they compile and link.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NATIVE=$ROOT/native
OUT=$ROOT/build/portability
JOBS=${NATIVE_JOBS:-2}
MINGW=${DRT_MINGW_PREFIX:-x86_64-w64-mingw32}
CLANGXX=${DRT_CLANGXX:-clang++-14}
CLANGC=${DRT_CLANGC:-clang-14}
ORT_INCLUDE=${ONNXRUNTIME_INCLUDE_DIR:-$ROOT/../shared/third_party/onnxruntime/include}
TRT_HEADERS=$ROOT/../shared/third_party/tensorrt
CUDA_INCLUDE=${CUDA_INCLUDE_DIR:-/usr/local/cuda/include}
failed=()
say() { echo "portability: $*"; }

# ---- tools (idempotent) -------------------------------------------------------------------------------------------
need=()
command -v "$MINGW-g++-posix" >/dev/null 2>&1 || need+=(g++-mingw-w64-x86-64-posix)
command -v "$CLANGXX" >/dev/null 2>&1 || need+=(clang-14)
command -v "${DRT_AARCH64_CXX:-aarch64-linux-gnu-g++}" >/dev/null 2>&1 || need+=(g++-aarch64-linux-gnu)
command -v "${DRT_QEMU_AARCH64:-qemu-aarch64}" >/dev/null 2>&1 || need+=(qemu-user)
command -v cmake >/dev/null 2>&1 || need+=(cmake)
[ -f /usr/include/nlohmann/json.hpp ] || need+=(nlohmann-json3-dev)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing ${need[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null) ||
      say "apt-get install ${need[*]} failed; the parts that need them are skipped"
  else
    say "missing ${need[*]} and cannot apt-get install them (not root or no apt-get)"
  fi
fi
mkdir -p "$OUT"
HAVE_JSON=0; [ -f /usr/include/nlohmann/json.hpp ] && HAVE_JSON=1
HAVE_ORT=0; [ -f "$ORT_INCLUDE/onnxruntime_c_api.h" ] && HAVE_ORT=1

# ---- lint ---------------------------------------------------------------------------------------------------------
if python3 "$NATIVE/portability_lint.py" "$NATIVE"; then say "lint: ok"; else failed+=(lint); fi

# ---- windows (MinGW-w64) ------------------------------------------------------------------------------------------
windows() {
  local W=$OUT/mingw CC="$MINGW-gcc-posix" CXX="$MINGW-g++-posix"
  command -v "$CXX" >/dev/null 2>&1 || { say "windows: SKIPPED: no $CXX (apt-get install g++-mingw-w64-x86-64-posix)"; return 0; }
  command -v "$MINGW-dlltool" >/dev/null 2>&1 || { say "windows: SKIPPED: no $MINGW-dlltool"; return 0; }
  [ $HAVE_ORT = 1 ] || { say "windows: SKIPPED: no ONNX Runtime C headers at $ORT_INCLUDE (set ONNXRUNTIME_INCLUDE_DIR)"; return 0; }
  [ $HAVE_JSON = 1 ] || { say "windows: SKIPPED: no nlohmann/json.hpp (apt-get install nlohmann-json3-dev)"; return 0; }
  mkdir -p "$W/deps/include" "$W/deps/share/cmake" "$W/ort" "$W/c"
  # nlohmann/json is header-only: its host package, seen alone (the host's /usr/include must not reach MinGW).
  ln -sfn /usr/include/nlohmann "$W/deps/include/nlohmann"
  local jcfg
  jcfg=$(find /usr/share/cmake /usr/lib/cmake /usr/share -maxdepth 3 -name nlohmann_jsonConfig.cmake 2>/dev/null | head -1)
  [ -n "$jcfg" ] || { say "windows: SKIPPED: no nlohmann_jsonConfig.cmake under /usr (nlohmann-json3-dev)"; return 0; }
  rm -rf "$W/deps/share/cmake/nlohmann_json"
  cp -r "$(dirname "$jcfg")" "$W/deps/share/cmake/nlohmann_json" || return 1
  # onnxruntime.dll's import library. libdefectrt calls only OrtGetApiBase (everything else goes through the OrtApi
  # table it returns), which every onnxruntime.dll exports unmangled (x64 has no __stdcall decoration).
  printf 'LIBRARY onnxruntime.dll\nEXPORTS\n    OrtGetApiBase\n' > "$W/ort/onnxruntime.def"
  "$MINGW-dlltool" -d "$W/ort/onnxruntime.def" -l "$W/ort/libonnxruntime.dll.a" -D onnxruntime.dll || return 1
  cmake -S "$NATIVE" -B "$W/build" -DCMAKE_TOOLCHAIN_FILE="$NATIVE/cmake/mingw-w64-x86_64.cmake" \
    -DDRT_MINGW_PREFIX="$MINGW" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG=-O0 -DCMAKE_C_FLAGS_DEBUG=-O0 \
    -DDEFECTRT_WERROR=ON "-DCMAKE_CXX_FLAGS=-Wpedantic -Wshadow -Wconversion -Wno-sign-conversion" \
    -Dnlohmann_json_DIR="$W/deps/share/cmake/nlohmann_json" -DONNXRUNTIME_INCLUDE_DIR="$ORT_INCLUDE" \
    -DONNXRUNTIME_LIB="$W/ort/libonnxruntime.dll.a" >"$W/configure.log" 2>&1 || { cat "$W/configure.log"; return 1; }
  cmake --build "$W/build" -j "$JOBS" || return 1
  local dll=$W/build/defectrt.dll
  [ -f "$dll" ] || { say "windows: FAILED: $dll was not built"; return 1; }
  # Exports: exactly the DRT_API functions of the header. Imports: onnxruntime.dll, no Python.
  local want got
  want=$(sed -n 's/^DRT_API[^(]*[ *]\(drt_[a-z0-9_]*\)(.*/\1/p' "$NATIVE/include/defectrt.h" | sort)
  got=$("$MINGW-objdump" -p "$dll" | sed -n '/\[Ordinal\/Name Pointer\] Table/,/^$/p' | awk '/\]/{print $NF}' | grep -v Table | sort)
  if [ -z "$want" ] || [ "$want" != "$got" ]; then
    say "windows: FAILED: defectrt.dll exports differ from defectrt.h's DRT_API functions"
    diff <(echo "$want") <(echo "$got"); return 1
  fi
  local imports; imports=$("$MINGW-objdump" -p "$dll" | sed -n 's/^\s*DLL Name: //p' | tr '\n' ' ')
  case " ${imports,,}" in *" onnxruntime.dll "*) ;; *) say "windows: FAILED: defectrt.dll does not import onnxruntime.dll ($imports)"; return 1;; esac
  case "${imports,,}" in *python*) say "windows: FAILED: defectrt.dll imports Python ($imports)"; return 1;; esac
  # The C header: C89 and C++98, as an application (dllimport), as the library (dllexport) and statically.
  printf '#include "defectrt.h"\nint drt_portability_probe(void) { return DRT_ABI_VERSION_MAJOR; }\n' > "$W/c/probe.c"
  local def
  for def in "" -DDRT_BUILDING_LIBRARY -DDRT_STATIC; do
    "$CC" -std=c89 -pedantic-errors -Wall -Wextra -Werror $def -I"$NATIVE/include" -c "$W/c/probe.c" -o "$W/c/probe.o" || return 1
    "$CXX" -x c++ -std=c++98 -pedantic-errors -Wall -Wextra -Werror $def -I"$NATIVE/include" -c "$W/c/probe.c" -o "$W/c/probe.o" || return 1
  done
  # examples/c against the DLL, as a Windows user builds it.
  "$CC" -std=c99 -pedantic-errors -Wall -Wextra -Werror -I"$NATIVE/include" "$ROOT/examples/c/detect_image.c" \
    -L"$W/build" -ldefectrt -o "$W/c/detect_image.exe" || return 1
  # objdump's output is read whole first: `objdump | grep -q` under pipefail fails at random (grep stops early,
  # objdump gets SIGPIPE and the pipeline reports it).
  local exe_imports; exe_imports=$("$MINGW-objdump" -p "$W/c/detect_image.exe")
  case "${exe_imports,,}" in *"dll name: defectrt.dll"*) ;;
    *) say "windows: FAILED: detect_image.exe does not import defectrt.dll"; return 1;; esac
  # The TensorRT backend's _WIN32 code (LoadLibraryW, wide paths): syntax only, binding API (8.0) and tensor API (11.1).
  local v n=0
  if [ -f "$CUDA_INCLUDE/cuda_runtime_api.h" ] && [ -d "$TRT_HEADERS" ]; then
    for v in 8.0 11.1; do
      [ -f "$TRT_HEADERS/$v/include/NvInferVersion.h" ] || continue
      "$CXX" -std=c++17 -fsyntax-only -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion -Werror \
        -DDEFECTRT_WITH_TENSORRT -DDEFECTRT_WITH_CUDA -I"$NATIVE/src" -I"$NATIVE/include" \
        -isystem "$TRT_HEADERS/$v/include" -isystem "$CUDA_INCLUDE" "$NATIVE/src/tensorrt/tensorrt_backend.cpp" || return 1
      n=$((n + 1))
    done
    say "windows: TensorRT backend compiled for _WIN32 against $n TensorRT header set(s)"
  else
    say "windows: TensorRT backend part SKIPPED: no $CUDA_INCLUDE/cuda_runtime_api.h or $TRT_HEADERS"
  fi
  say "windows: ok (defectrt.dll imports: $imports)"
}

# ---- gcc7 proxy: g++ -Wpedantic over every C++ source -----------------------------------------------------------
gcc7() {
  command -v g++ >/dev/null 2>&1 || { say "gcc7: SKIPPED: no g++"; return 0; }
  [ $HAVE_ORT = 1 ] || { say "gcc7: SKIPPED: no ONNX Runtime C headers at $ORT_INCLUDE"; return 0; }
  [ $HAVE_JSON = 1 ] || { say "gcc7: SKIPPED: no nlohmann/json.hpp"; return 0; }
  local f rc=0
  for f in "$NATIVE"/src/*.cpp "$NATIVE"/tools/defectrt_bench.cpp "$NATIVE"/tests/*.cpp; do
    g++ -std=c++17 -fsyntax-only -Wall -Wextra -Wpedantic -Werror -DDRT_BUILDING_LIBRARY \
      -DDRT_PACKAGE_VERSION='"0"' -I"$NATIVE/src" -I"$NATIVE/include" -isystem "$ORT_INCLUDE" "$f" || rc=1
  done
  [ $rc = 0 ] && say "gcc7: ok (g++ $(g++ -dumpversion) -std=c++17 -Wpedantic -Werror; GCC 7.5 itself not run)"
  return $rc
}

# ---- clang-14: the CMake project with -Werror ---------------------------------------------------------------------
clang() {
  command -v "$CLANGXX" >/dev/null 2>&1 || { say "clang: SKIPPED: no $CLANGXX (apt-get install clang-14)"; return 0; }
  [ $HAVE_ORT = 1 ] || { say "clang: SKIPPED: no ONNX Runtime C headers at $ORT_INCLUDE"; return 0; }
  [ $HAVE_JSON = 1 ] || { say "clang: SKIPPED: no nlohmann/json.hpp"; return 0; }
  # Compile and link only (the tests run in the g++ builds of native/ci.sh): the wheel's library is not needed to
  # link a shared library, so an empty stand-in with its SONAME would do, but the real one is used when present.
  local C=$OUT/clang ORT_LIB=${ONNXRUNTIME_LIB:-}
  if [ -z "$ORT_LIB" ]; then
    ORT_LIB=$("${DRT_PYTHON:-python3}" -c 'import glob, os, onnxruntime; print(sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so.1*")))[-1])' 2>/dev/null || true)
  fi
  [ -f "$ORT_LIB" ] || { say "clang: SKIPPED: no libonnxruntime.so.1.x (set ONNXRUNTIME_LIB or DRT_PYTHON)"; return 0; }
  cmake -S "$NATIVE" -B "$C" -DCMAKE_C_COMPILER="$CLANGC" -DCMAKE_CXX_COMPILER="$CLANGXX" -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_CXX_FLAGS_DEBUG=-O0 -DCMAKE_C_FLAGS_DEBUG=-O0 -DDEFECTRT_WERROR=ON "-DCMAKE_CXX_FLAGS=-Wpedantic -Wshadow" \
    -DONNXRUNTIME_INCLUDE_DIR="$ORT_INCLUDE" -DONNXRUNTIME_LIB="$ORT_LIB" >"$OUT/clang-configure.log" 2>&1 ||
    { cat "$OUT/clang-configure.log"; return 1; }
  cmake --build "$C" -j "$JOBS" || return 1
  say "clang: ok ($("$CLANGXX" --version | head -1), -Werror -Wpedantic -Wshadow)"
}

# ---- aarch64: the core's tests cross-built for the Jetsons' CPU, run under qemu-user --------------------------------
aarch64() {
  local CXX=${DRT_AARCH64_CXX:-aarch64-linux-gnu-g++} QEMU=${DRT_QEMU_AARCH64:-qemu-aarch64} A=$OUT/aarch64
  command -v "$CXX" >/dev/null 2>&1 || { say "aarch64: SKIPPED: no $CXX (apt-get install g++-aarch64-linux-gnu)"; return 0; }
  command -v "$QEMU" >/dev/null 2>&1 || { say "aarch64: SKIPPED: no $QEMU (apt-get install qemu-user)"; return 0; }
  [ $HAVE_JSON = 1 ] || { say "aarch64: SKIPPED: no nlohmann/json.hpp"; return 0; }
  mkdir -p "$A/include"
  ln -sfn /usr/include/nlohmann "$A/include/nlohmann"  # header-only; the host's /usr/include must not reach $CXX
  # The core without the ONNX Runtime backend (no AArch64 libonnxruntime here; the tests do not call it), static so
  # that qemu needs no AArch64 sysroot.
  "$CXX" -std=c++17 -O3 -Wall -Wextra -Wpedantic -Werror -static -I"$NATIVE/src" -I"$NATIVE/include" \
    -isystem "$A/include" "$NATIVE/tests/test_core.cpp" "$NATIVE/src/preprocess.cpp" "$NATIVE/src/util.cpp" \
    "$NATIVE/src/bundle.cpp" "$NATIVE/src/postprocess.cpp" "$NATIVE/src/sha256.cpp" -o "$A/defectrt_tests" || return 1
  (cd "$A" && "$QEMU" ./defectrt_tests >"$A/test.log" 2>&1) ||
    { cat "$A/test.log"; say "aarch64: FAILED: the core's tests under $QEMU"; return 1; }
  say "aarch64: ok ($("$CXX" -dumpversion) -O3 -Werror, core tests incl. the NEON letterbox passed under $QEMU)"
}

windows || failed+=(windows)
gcc7 || failed+=(gcc7)
clang || failed+=(clang)
aarch64 || failed+=(aarch64)
if [ ${#failed[@]} -gt 0 ]; then
  say "FAILED: ${failed[*]}"
  exit 1
fi
say "all checks that could run passed (MSVC 2019 and GCC 7.5 themselves are not run here: native/README.md)"
