# The two set-up commands of the README. Both are idempotent: re-running them re-uses the venv and
# installs only what is missing.
#   make demo   the main job end to end on the embedded default (CPU, ONNX Runtime)
#   make test   install what the tests need, then run them
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch is pinned to the CPU build before anything can ask for it: an unpinned torch pulls GBs of CUDA wheels.
TORCH ?= torch==2.13.0

.PHONY: demo test venv install-export install-test lint-py38 native

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

venv: $(PY)

install-export: venv
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e '.[export]'

install-test: install-export
	$(PIP) install -q -e '.[export,modelopt,dev]'
	# OpenVINO backend tests (issue #18)
	$(PIP) install -q -e '.[openvino]'

demo: install-export
	$(PY) scripts/demo.py

# The device side (runtime, bench, capi, data, cli) must stay Python 3.8 (JetPack 5) and torch-free.
lint-py38: install-test lint-py38-issue19
	$(VENV)/bin/vermin -t=3.8- --no-tips --violations --eval-annotations src/defectrt/__init__.py src/defectrt/errors.py src/defectrt/fileio.py src/defectrt/runtime src/defectrt/bench src/defectrt/capi src/defectrt/data src/defectrt/cli
	# issue 16: the one home for TensorRT versions is imported by the runtime
	$(VENV)/bin/vermin -t=3.8- --no-tips --violations --eval-annotations src/defectrt/trt_compat.py
	# issue 15: detect's annotation and the option objects (device side)
	$(VENV)/bin/vermin -t=3.8- --no-tips --violations --eval-annotations src/defectrt/viz.py src/defectrt/options.py

# Native library (native/, issue 17): installs cmake + nlohmann-json3-dev when missing, builds build/native and the
# ASan + UBSan build/native-asan, runs ctest in both; pytest's C ABI tests then use them (skipped, with the reason,
# where the build was skipped).
native: install-test
	bash native/ci.sh $(PY)


# --- native TensorRT compile/link matrix (issues 16 / 17): the TensorRT backend, the GPU letterbox and the
# DrtGridSample plugins against the real headers of every TensorRT in ../shared, with a stub libnvinfer and nvcc
# (sm_86, sm_87). Prints ok / FAIL per version; skips with a printed reason without ../shared, g++ or CUDA.
.PHONY: trt-matrix
trt-matrix:
	python3 native/trt_matrix/run_matrix.py --jobs 2

# Triton serving (issue 20). nvidia-pytriton goes in with --no-deps: every release of it pins numpy<2, which
# this environment cannot take; its stub gets numpy<2 from its own small environment (defectrt.serving.stub_env).
.PHONY: install-triton lint-py38-triton
install-triton: install-test
	$(PIP) install -q -e '.[triton]'
	$(PIP) install -q --no-deps 'nvidia-pytriton==0.7.0'
	@# The Python-backend stub links libpython3.X.so: install the system's copy only where the interpreter has none.
	@$(PY) -c "import ctypes.util as u, sys; sys.exit(0 if u.find_library('python%d.%d' % sys.version_info[:2]) else 1)" \
		|| (apt-get update -q && apt-get install -y -q libpython$$($(PY) -c "import sys; print('%d.%d' % sys.version_info[:2])"))
	$(PY) -m defectrt.serving.stub_env

lint-py38-triton: install-test
	$(VENV)/bin/vermin -t=3.8- --no-tips --violations --eval-annotations src/defectrt/client.py src/defectrt/serving/protocol.py

# --- portability of native/ (winbuild): MinGW-w64 cross build of the Windows code (defectrt.dll), a g++ -Wpedantic
# and a clang-14 -Werror build, and a source lint for GCC 7.5 / MSVC 2019 (neither compiler exists here). Installs
# g++-mingw-w64-x86-64-posix and clang-14 when missing; each part skips with a printed reason without its compiler.
.PHONY: portability
portability: install-test
	DRT_PYTHON=$(PY) bash native/portability.sh

# The README's test command (CI runs exactly this): every install, the native builds and checks, then pytest.
test: install-test lint-py38 install-triton lint-py38-triton native trt-matrix portability
	$(VENV)/bin/pytest -q -ra

# issue 19: progress levels, friendly errors, inspect and the models table are imported by the CLI on the device
lint-py38-issue19: install-test
	$(VENV)/bin/vermin -t=3.8- --no-tips --violations --eval-annotations src/defectrt/progress.py src/defectrt/friendly.py src/defectrt/inspection.py src/defectrt/zoo_table.py
	# issue 19 (s5): TensorRT engine-build progress runs on the device (JetPack 5 builds engines there)
	$(VENV)/bin/vermin -t=3.8- --no-tips --violations --eval-annotations src/defectrt/export/build_progress.py
