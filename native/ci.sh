#!/usr/bin/env bash
# Build and test the native library for `make native` / `make test` (idempotent):
#   1. cmake, a C++ compiler and nlohmann-json3-dev from apt when missing (root + apt-get only; else a printed skip);
#   2. build/native (Release, -Werror) and build/native-asan (AddressSanitizer + UBSan), ctest in both.
# ONNX Runtime: the C headers of ../shared/third_party/onnxruntime/include (or ONNXRUNTIME_INCLUDE_DIR) and the
# libonnxruntime.so.1.x of the onnxruntime wheel of the Python given as $1. Without the headers the build is
# skipped with the reason (pytest then skips the native tests, printing why).
set -euo pipefail
PY=${1:-python3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
JOBS=${NATIVE_JOBS:-2}
skip() { echo "native: SKIPPED: $*"; exit 0; }

need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v c++ >/dev/null 2>&1 || need+=(g++)
[ -f /usr/include/nlohmann/json.hpp ] || [ -n "${NLOHMANN_JSON_DIR:-}" ] || need+=(nlohmann-json3-dev)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    skip "missing ${need[*]} and cannot apt-get install them (not root or no apt-get); install them and re-run"
  fi
fi

ORT_INCLUDE=${ONNXRUNTIME_INCLUDE_DIR:-$ROOT/../shared/third_party/onnxruntime/include}
[ -f "$ORT_INCLUDE/onnxruntime_c_api.h" ] || skip "no ONNX Runtime C headers at $ORT_INCLUDE (set ONNXRUNTIME_INCLUDE_DIR, or build by hand against a release package: native/README.md)"
ORT_LIB=${ONNXRUNTIME_LIB:-$("$PY" -c 'import glob, os, onnxruntime; print(sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so.1*")))[-1])' 2>/dev/null || true)}
[ -f "$ORT_LIB" ] || skip "no libonnxruntime.so.1.x in the onnxruntime wheel of $PY (set ONNXRUNTIME_LIB)"

ORT=(-DONNXRUNTIME_INCLUDE_DIR="$ORT_INCLUDE" -DONNXRUNTIME_LIB="$ORT_LIB")
cmake -S "$ROOT/native" -B "$ROOT/build/native" -DCMAKE_BUILD_TYPE=Release -DDEFECTRT_WERROR=ON "${ORT[@]}" >/dev/null
cmake --build "$ROOT/build/native" -j "$JOBS"
(cd "$ROOT/build/native" && ctest --output-on-failure)
cmake -S "$ROOT/native" -B "$ROOT/build/native-asan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDEFECTRT_SANITIZE=ON \
  -DDEFECTRT_BUILD_TOOLS=OFF "${ORT[@]}" >/dev/null
cmake --build "$ROOT/build/native-asan" -j "$JOBS"
(cd "$ROOT/build/native-asan" && ctest --output-on-failure)
