# spikeshield: `make run` (the main job) and `make test` set up whatever is missing first.
VENV ?= .venv
PY := $(VENV)/bin/python
# A CPU build of PyTorch is installed before anything that depends on torch (a bare `torch` pulls CUDA builds).
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
# Frameworks whose declared torchvision dependency has no CPU build here: installed without it (they import and work
# without torchvision; tests/test_adapters.py runs them). Norse's source release takes its version from git.
FOREIGN ?= spikingjelly==2.0.0 norse==1.1.0 torchattacks==3.5.1

.PHONY: setup data browser run test lint bench clean

setup: $(STAMP) data browser

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev,adapters,gpu]"
	SETUPTOOLS_SCM_PRETEND_VERSION=1.1.0 $(PY) -m pip install -q --no-deps $(FOREIGN)
	touch $(STAMP)

# FashionMNIST from Debian's package where apt is available; otherwise spikeshield downloads it on first use.
data:
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
		(apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1) || \
		echo "dataset-fashion-mnist not installed; spikeshield will download FashionMNIST"; \
	fi

# Headless Chromium (Debian's package) renders the leaderboard page in tests/test_benchmark.py.
browser:
	@if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get install -y -qq chromium >/dev/null 2>&1 || \
		(apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1) || \
		echo "chromium not installed: the leaderboard's browser check cannot run"; \
	fi

# The main job: train the quick model, then its naive robustness (FGSM, PGD7 through its own surrogate) beside the
# honest one (snn-adaptive-quick as a cascade), the gap, and the gradient-obfuscation audit's flags.
run: setup
	$(VENV)/bin/spikeshield train --config configs/quick.yaml --overwrite
	$(VENV)/bin/spikeshield check --checkpoint runs/quick/model --eps 8/255 --n-examples 300 --out runs/quick

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks

bench: setup
	$(PY) benchmarks/throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache
