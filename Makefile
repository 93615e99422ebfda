# All set-up happens here: the first `make test` or `make demo` on a fresh machine creates
# .venv inside the repo and installs the package with its test, flower, ray and docs extras.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint docs demo report-check victims bench-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	# Ask for torch and torchvision together so pip resolves a matching pair from the registry.
	$(BIN)/python -m pip install -e ".[test,flower,ray,docs]"
	$(BIN)/python -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check gradinvert tests benchmarks samples docs
	$(BIN)/ruff format --check gradinvert tests benchmarks samples docs

# The documentation site, docs/ -> site/, offline and strict: any warning (a broken link or anchor,
# a page in no table of contents, a docstring that does not parse) fails the build. -E reads every
# page afresh, so a warning is never hidden by an earlier build.
docs: $(STAMP)
	rm -rf site
	$(BIN)/sphinx-build -b html -E -W --keep-going -q -d build/doctrees docs site
	@echo "docs: site/index.html"

test: lint docs
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/gradinvert demo --out demo-out

# Trained victims (docs/how-to/trained-victims.md): convnet and cifar-resnet18 trained on the tuning
# digits, checkpoints after 0, 1 and 5 epochs in build/victims/ (cifar-resnet18: 45 MB each, so
# built here, not shipped; the convnet ones also ship in samples/victims/). Several minutes on 2
# cores; neither the tests nor the demo need it.
victims: $(STAMP)
	nice -n 10 $(BIN)/python samples/train_victims.py --out build/victims

# Render an audit report in headless Chromium (installed from Debian's packages when absent).
report-check: $(STAMP)
	bash samples/report_check.sh

# breaching 0.1.2 for benchmarks/vs_breaching.py, in its own venv layered on .venv: a .pth file
# puts .venv's packages (torch, torchvision, scipy, lpips) on its path, so pip adds only
# breaching and hydra-core, and our environment stays as `make install` made it.
BREACHING_VENV := .venv-breaching

bench-deps: $(STAMP)
	$(PYTHON) -m venv $(BREACHING_VENV)
	$(BIN)/python -c "import site; print(site.getsitepackages()[0])" > \
		"$$($(BREACHING_VENV)/bin/python -c 'import site; print(site.getsitepackages()[0])')/gradinvert-venv.pth"
	$(BREACHING_VENV)/bin/python -m pip install "breaching==0.1.2"
	$(BREACHING_VENV)/bin/python -c "import breaching, torch; print('breaching ok, torch', torch.__version__)"

clean:
	rm -rf $(VENV) $(BREACHING_VENV) demo-out report-check .pytest_cache site build/doctrees docs/reference/cli
