"""CMake builds of the TensorRT parts against real headers and a stub libnvinfer (no TensorRT, no GPU needed):

* native/cmake/tensorrt.cmake adds the backend + GPU letterbox to a `defectrt` target and links the CUDA runtime
  statically;
* plugins/CMakeLists.txt builds libdefectrt_plugins with cudart_static (issue 16, fix 6: a plugin DLL must not need
  cudart64_*.dll, which Python 3.8+ on Windows no longer finds on PATH).
Skipped with a reason where cmake, g++, the CUDA toolkit or ../shared is absent.
"""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("DEFECTRT_SHARED", os.path.join(ROOT, "..", "shared"))
CUDA = os.environ.get("CUDA_HOME", "/usr/local/cuda")
VERSION = "10.3"


def run(cmd, **kw):
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, **kw)
    assert proc.returncode == 0, " ".join(cmd) + "\n" + proc.stdout[-4000:]
    return proc.stdout


def needed_libraries(lib):
    out = run(["objdump", "-p", lib])
    return [ln.split()[-1] for ln in out.splitlines() if ln.strip().startswith("NEEDED")]


@pytest.fixture(scope="module")
def trt_root(tmp_path_factory):
    """A TensorRT 'install': the real headers of one version and a stub libnvinfer built against them."""
    include = os.path.join(SHARED, "third_party", "tensorrt", VERSION, "include")
    for what, ok in [("../shared TensorRT {} headers".format(VERSION), os.path.isdir(include)),
                     ("cmake", shutil.which("cmake")), ("g++", shutil.which("g++")), ("objdump", shutil.which("objdump")),
                     ("nvcc in " + CUDA, os.path.exists(os.path.join(CUDA, "bin", "nvcc")))]:
        if not ok:
            pytest.skip("{} not found".format(what))
    root = tmp_path_factory.mktemp("trtroot")
    os.symlink(include, str(root / "include"))
    (root / "lib").mkdir()
    run(["g++", "-std=c++17", "-shared", "-fPIC", "-isystem", include, "-isystem", os.path.join(CUDA, "include"),
         "-o", str(root / "lib" / "libnvinfer.so"), "-Wl,-soname,libnvinfer.so.10",
         os.path.join(ROOT, "native", "trt_matrix", "stub_nvinfer.cpp")])
    os.symlink("libnvinfer.so", str(root / "lib" / "libnvinfer.so.10"))  # as TensorRT's packages install it
    return str(root)


def cmake_build(src, build, *defs):
    env = dict(os.environ, PATH=os.path.join(CUDA, "bin") + os.pathsep + os.environ.get("PATH", ""))
    run(["cmake", "-S", src, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DCMAKE_CUDA_ARCHITECTURES=87"] + list(defs),
        env=env)
    return run(["cmake", "--build", build, "-j2"], env=env)


def cmake_project(tmp_path, text):
    """A project folder with dummy.cpp / main.cpp and the given CMakeLists.txt text."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "dummy.cpp").write_text("int drt_dummy() { return 0; }\n")
    (project / "main.cpp").write_text("int main() { return 0; }\n")
    (project / "CMakeLists.txt").write_text(text)
    return str(project)


def test_tensorrt_cmake_module_adds_backend_to_defectrt(trt_root, tmp_path):
    if not os.path.exists(os.path.join(ROOT, "native", "src", "letterbox_math.h")):
        pytest.skip("native/src/letterbox_math.h not found (it comes with the native core)")
    # The shape of native/CMakeLists.txt's use: the target first, then the optional include.
    project = cmake_project(tmp_path,
        "cmake_minimum_required(VERSION 3.18)\nproject(t LANGUAGES CXX)\nset(CMAKE_CXX_STANDARD 17)\n"
        "add_compile_options(-fno-omit-frame-pointer)\n"  # directory-wide host flags, like the core's sanitizers
                                                            # (nvcc alone rejects them)
        "option(DEFECTRT_WITH_TENSORRT \"\" OFF)\nadd_library(defectrt SHARED dummy.cpp)\n"
        # the core's warnings go on the target for every language; nvcc must not receive them
        "target_compile_options(defectrt PRIVATE -Wall -Wextra -Werror)\n"
        "include({}/native/cmake/tensorrt.cmake OPTIONAL)\n"
        # the core's defectrt_bench: the same sources, properties and libraries as defectrt, its own -Werror
        "add_executable(tool main.cpp)\nget_target_property(_s defectrt SOURCES)\nlist(REMOVE_ITEM _s dummy.cpp)\n"
        "target_sources(tool PRIVATE ${{_s}})\n"
        "foreach(_p COMPILE_DEFINITIONS INCLUDE_DIRECTORIES COMPILE_OPTIONS)\n"
        "  get_target_property(_v defectrt ${{_p}})\n"
        "  if(_v)\n    set_property(TARGET tool APPEND PROPERTY ${{_p}} ${{_v}})\n  endif()\nendforeach()\n"
        "get_target_property(_l defectrt LINK_LIBRARIES)\ntarget_link_libraries(tool PRIVATE ${{_l}})\n"
        "target_compile_options(tool PRIVATE -Wall -Wextra -Werror)\n".format(ROOT.replace("\\", "/")))
    build = str(tmp_path / "build")
    out = cmake_build(project, build, "-DDEFECTRT_WITH_TENSORRT=ON", "-DTENSORRT_ROOT=" + trt_root)
    assert "letterbox_kernel.cu" in out and "tensorrt_backend.cpp" in out
    assert os.path.exists(os.path.join(build, "tool")), out[-2000:]
    lib = os.path.join(build, "libdefectrt.so")
    run(["nm", "-D", "--defined-only", lib])
    needed = needed_libraries(lib)
    assert "libnvinfer.so.10" in needed
    assert not [n for n in needed if "cudart" in n], needed  # CUDA runtime linked statically


def test_tensorrt_cmake_module_names_a_missing_tensorrt(tmp_path):
    if not shutil.which("cmake"):
        pytest.skip("cmake not found")
    project = cmake_project(tmp_path,
        "cmake_minimum_required(VERSION 3.18)\nproject(t LANGUAGES CXX)\nadd_library(defectrt SHARED dummy.cpp)\n"
        "include({}/native/cmake/tensorrt.cmake)\n".format(ROOT.replace("\\", "/")))
    proc = subprocess.run(["cmake", "-S", project, "-B", str(tmp_path / "b"), "-DDEFECTRT_WITH_TENSORRT=ON",
                           "-DTENSORRT_ROOT=" + str(tmp_path / "nowhere"), "-DTENSORRT_INCLUDE_DIR=",
                           "-DTENSORRT_NVINFER_LIBRARY="],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    if proc.returncode == 0:
        pytest.skip("a system TensorRT was found; the not-found message cannot be shown here")
    assert "TensorRT was not found" in proc.stdout and "TENSORRT_ROOT" in proc.stdout


def test_plugin_library_links_cudart_statically(trt_root, tmp_path):
    build = str(tmp_path / "plugins")
    cmake_build(os.path.join(ROOT, "plugins"), build, "-DTENSORRT_ROOT=" + trt_root)
    lib = os.path.join(build, "libdefectrt_plugins.so")
    needed = needed_libraries(lib)
    assert "libnvinfer.so.10" in needed
    assert not [n for n in needed if "cudart" in n], needed


def test_native_core_builds_with_tensorrt(trt_root, tmp_path):
    """The real native/ project with -DDEFECTRT_WITH_TENSORRT=ON: the core's detector (which hands images to the
    backend's GPU letterbox) compiles under -Werror against TensorRT's headers and links the stub libnvinfer."""
    import glob

    import onnxruntime

    ort_include = os.path.join(SHARED, "third_party", "onnxruntime", "include")
    ort_libs = sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so.1*")))
    if not os.path.exists(os.path.join(ort_include, "onnxruntime_c_api.h")) or not ort_libs:
        pytest.skip("ONNX Runtime C headers (../shared) or the wheel's libonnxruntime.so.1.x not found")
    build = str(tmp_path / "native-trt")
    cmake_build(os.path.join(ROOT, "native"), build, "-DDEFECTRT_WITH_TENSORRT=ON", "-DTENSORRT_ROOT=" + trt_root,
                "-DDEFECTRT_WERROR=ON", "-DONNXRUNTIME_INCLUDE_DIR=" + ort_include, "-DONNXRUNTIME_LIB=" + ort_libs[-1])
    needed = needed_libraries(os.path.join(build, "libdefectrt.so"))
    assert "libnvinfer.so.10" in needed and not [n for n in needed if "cudart" in n], needed
