# CMake toolchain for a Windows (x86_64) build of libdefectrt with MinGW-w64 on Linux, e.g. Debian/Ubuntu:
#   apt-get install g++-mingw-w64-x86-64-posix
#   cmake -S native -B build/native-mingw -DCMAKE_TOOLCHAIN_FILE=native/cmake/mingw-w64-x86_64.cmake \
#         -DONNXRUNTIME_ROOT=<onnxruntime-win-x64 release package> -Dnlohmann_json_DIR=<its CMake config folder>
# native/portability.sh uses it for the compile/link check of the Windows code paths. The posix thread model is
# needed: std::mutex / std::thread / thread_local of GCC 12's win32 model are incomplete.
# This is not the supported Windows build (that is MSVC 2019+, native/README.md); it is how CI compiles the
# _WIN32 code on Linux.
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(DRT_MINGW_PREFIX x86_64-w64-mingw32 CACHE STRING "MinGW-w64 tool prefix")
set(CMAKE_C_COMPILER ${DRT_MINGW_PREFIX}-gcc-posix)
set(CMAKE_CXX_COMPILER ${DRT_MINGW_PREFIX}-g++-posix)
set(CMAKE_RC_COMPILER ${DRT_MINGW_PREFIX}-windres)
set(CMAKE_FIND_ROOT_PATH /usr/${DRT_MINGW_PREFIX})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
