# The TensorRT backend and the GPU letterbox of libdefectrt. Included (OPTIONAL) by native/CMakeLists.txt after the
# `defectrt` target exists; does nothing unless -DDEFECTRT_WITH_TENSORRT=ON.
#
#   cmake -S native -B build/native -DDEFECTRT_WITH_TENSORRT=ON                       # Jetson: JetPack's paths
#   cmake -S native -B build/native -DDEFECTRT_WITH_TENSORRT=ON -DTENSORRT_ROOT=/opt/TensorRT-10.3.0.26 \
#         -DCMAKE_CUDA_ARCHITECTURES=86                                               # desktop tarball / Windows zip
#
# TensorRT: TENSORRT_ROOT (cache or environment: the folder with include/ and lib/), else the system paths, including
# JetPack's /usr/include/aarch64-linux-gnu and /usr/lib/aarch64-linux-gnu. CUDA: FindCUDAToolkit (nvcc on PATH or
# CUDAToolkit_ROOT). The CUDA runtime is linked statically (cudart_static), so the library needs no cudart DLL / .so
# beside it; libnvinfer (and libnvinfer_plugin for EfficientNMS_TRT engines) must be on the loader's path.
# UNVERIFIED ON HARDWARE: configure + build of this file is tested with a stub libnvinfer (tests/test_trt_matrix.py).
if(NOT DEFECTRT_WITH_TENSORRT)
  return()
endif()
if(CMAKE_VERSION VERSION_LESS 3.18)
  message(FATAL_ERROR "DEFECTRT_WITH_TENSORRT needs CMake 3.18 or newer (this is ${CMAKE_VERSION}); "
                      "JetPack 4.6 ships 3.10: python3 -m pip install --user 'cmake>=3.18' and use that cmake")
endif()

set(TENSORRT_ROOT "$ENV{TENSORRT_ROOT}" CACHE PATH "TensorRT install (folder with include/ and lib/); empty = system")
find_path(TENSORRT_INCLUDE_DIR NvInferVersion.h
  HINTS ${TENSORRT_ROOT}
  PATH_SUFFIXES include include/${CMAKE_LIBRARY_ARCHITECTURE}
  PATHS /usr/include/aarch64-linux-gnu /usr/include/x86_64-linux-gnu /usr/local/tensorrt/include)
find_library(TENSORRT_NVINFER_LIBRARY
  NAMES nvinfer nvinfer_11 nvinfer_10
  HINTS ${TENSORRT_ROOT}
  PATH_SUFFIXES lib lib64 lib/${CMAKE_LIBRARY_ARCHITECTURE} lib/x64
  PATHS /usr/lib/aarch64-linux-gnu /usr/lib/x86_64-linux-gnu /usr/local/tensorrt/lib)
if(NOT TENSORRT_INCLUDE_DIR OR NOT TENSORRT_NVINFER_LIBRARY)
  message(FATAL_ERROR
    "DEFECTRT_WITH_TENSORRT=ON but TensorRT was not found (NvInferVersion.h: '${TENSORRT_INCLUDE_DIR}', "
    "nvinfer: '${TENSORRT_NVINFER_LIBRARY}'). Pass -DTENSORRT_ROOT=<unpacked TensorRT tarball / zip>, install "
    "JetPack's libnvinfer-dev on a Jetson, or configure with -DDEFECTRT_WITH_TENSORRT=OFF (ONNX Runtime only).")
endif()

# The version, for the message and the minimum check (10.16 / 11.x write it as TRT_*_ENTERPRISE).
file(STRINGS "${TENSORRT_INCLUDE_DIR}/NvInferVersion.h" _drt_trt_lines
     REGEX "^#define (NV_TENSORRT|TRT)_(MAJOR|MINOR|PATCH)(_ENTERPRISE)? +[0-9]+")
set(TENSORRT_VERSION "")
foreach(_part MAJOR MINOR PATCH)
  set(_v "")
  foreach(_line IN LISTS _drt_trt_lines)
    if(_line MATCHES "^#define (NV_TENSORRT_${_part}|TRT_${_part}_ENTERPRISE) +([0-9]+)")
      set(_v ${CMAKE_MATCH_2})
    endif()
  endforeach()
  list(APPEND TENSORRT_VERSION ${_v})
endforeach()
string(REPLACE ";" "." TENSORRT_VERSION "${TENSORRT_VERSION}")
if(TENSORRT_VERSION VERSION_LESS 8.0)
  message(FATAL_ERROR "defectrt's TensorRT backend needs TensorRT 8.0 or newer; found '${TENSORRT_VERSION}' in "
                      "${TENSORRT_INCLUDE_DIR}")
endif()

find_package(CUDAToolkit REQUIRED)
# Default architectures when none are given: the devices defectrt is for. CUDA 13 dropped everything below 7.5, so
# Nano (53), TX2 (62) and Xavier (72) need their own JetPack's nvcc (CUDA 10.2 / 11.4), which still has them.
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES OR CMAKE_CUDA_ARCHITECTURES STREQUAL "")
  if(CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64|arm64|ARM64")
    set(_drt_archs 53 62 72 87)
  else()
    set(_drt_archs 75 86 89)
  endif()
  set(_drt_keep "")
  foreach(_a IN LISTS _drt_archs)
    if(CUDAToolkit_VERSION VERSION_GREATER_EQUAL 13.0 AND _a LESS 75)
      message(STATUS "defectrt: CUDA ${CUDAToolkit_VERSION} cannot target sm_${_a}; build with that device's JetPack")
    elseif((_a EQUAL 87 AND CUDAToolkit_VERSION VERSION_LESS 11.4) OR (_a EQUAL 86 AND CUDAToolkit_VERSION VERSION_LESS 11.1)
           OR (_a EQUAL 89 AND CUDAToolkit_VERSION VERSION_LESS 11.8))
      message(STATUS "defectrt: CUDA ${CUDAToolkit_VERSION} cannot target sm_${_a}; leaving it out")
    else()
      list(APPEND _drt_keep ${_a})
    endif()
  endforeach()
  set(CMAKE_CUDA_ARCHITECTURES ${_drt_keep} CACHE STRING "CUDA architectures" FORCE)
endif()
if(NOT CMAKE_CUDA_COMPILER AND CUDAToolkit_NVCC_EXECUTABLE)
  set(CMAKE_CUDA_COMPILER ${CUDAToolkit_NVCC_EXECUTABLE})
endif()
enable_language(CUDA)
message(STATUS "defectrt: TensorRT ${TENSORRT_VERSION} (${TENSORRT_INCLUDE_DIR}, ${TENSORRT_NVINFER_LIBRARY}), "
               "CUDA ${CUDAToolkit_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES}")

set(_drt_trt_dir ${CMAKE_CURRENT_LIST_DIR}/../src)
# The kernel is an object library of its own, so that its CUDA-only properties stay here and the core's target options
# (-Werror ...) do not apply to nvcc; directory-wide host flags (the core's sanitizers) reach the host compiler through
# CMake's -forward-unknown-to-host-compiler. Its objects go into `defectrt` like any source.
add_library(defectrt_cuda_kernels OBJECT ${_drt_trt_dir}/cuda/letterbox_kernel.cu)
target_include_directories(defectrt_cuda_kernels PRIVATE ${_drt_trt_dir})
target_compile_definitions(defectrt_cuda_kernels PRIVATE DEFECTRT_WITH_CUDA)
# C++14: JetPack 4.6's CUDA 10.2 has no C++17. No fast-math: the kernel's x / 255 must be the IEEE division.
set_target_properties(defectrt_cuda_kernels PROPERTIES
  CUDA_STANDARD 14 CUDA_STANDARD_REQUIRED ON POSITION_INDEPENDENT_CODE ON
  CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}")
if(NOT MSVC)
  target_compile_options(defectrt_cuda_kernels PRIVATE -Xcompiler=-Wall)
endif()

target_sources(defectrt PRIVATE
  ${_drt_trt_dir}/tensorrt/tensorrt_backend.cpp
  ${_drt_trt_dir}/cuda/letterbox_host.cpp
  $<TARGET_OBJECTS:defectrt_cuda_kernels>)
# TensorRT as an imported target: its headers then count as system headers (their unused parameters do not trip the
# core's -Werror) for `defectrt` and for every target that links what `defectrt` links (the core's defectrt_bench).
add_library(drt_nvinfer UNKNOWN IMPORTED)
set_target_properties(drt_nvinfer PROPERTIES IMPORTED_LOCATION "${TENSORRT_NVINFER_LIBRARY}"
                                             INTERFACE_INCLUDE_DIRECTORIES "${TENSORRT_INCLUDE_DIR}")
target_compile_definitions(defectrt PRIVATE DEFECTRT_WITH_TENSORRT DEFECTRT_WITH_CUDA)
target_link_libraries(defectrt PRIVATE drt_nvinfer CUDA::cudart_static ${CMAKE_DL_LIBS})
if(NOT MSVC)
  # the binding API of 8.x is deprecated in 8.5 / 8.6 headers and used on purpose below 8.5 (see trt_compat.h)
  set_source_files_properties(${_drt_trt_dir}/tensorrt/tensorrt_backend.cpp PROPERTIES
    COMPILE_OPTIONS "-Wno-deprecated-declarations")
endif()
