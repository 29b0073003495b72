# The two set-up commands of the README. Both are idempotent: re-running them re-uses the venv and
# installs only what is missing.
#   make demo   the main job end to end on the embedded default (CPU, ONNX Runtime)
#   make test   install what the tests need, then run them
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch is pinned to the CPU build before anything can ask for it: an unpinned torch pulls GBs of CUDA wheels.
TORCH ?= torch==2.13.0

.PHONY: demo test venv install-export install-test lint-py38

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

venv: $(PY)

install-export: venv
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e '.[export]'

install-test: install-export
	$(PIP) install -q -e '.[export,modelopt,dev]'

demo: install-export
	$(PY) scripts/demo.py

# The device side (runtime, bench, capi, data, cli) must stay Python 3.8 (JetPack 5) and torch-free.
lint-py38: install-test
	$(VENV)/bin/vermin -t=3.8- --no-tips --violations --eval-annotations src/defectrt/__init__.py src/defectrt/errors.py src/defectrt/fileio.py src/defectrt/runtime src/defectrt/bench src/defectrt/capi src/defectrt/data src/defectrt/cli

test: install-test lint-py38
	$(VENV)/bin/pytest -q -ra

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

test: install-triton lint-py38-triton
