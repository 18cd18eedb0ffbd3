# The two set-up commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
BUNDLE ?= runs/mfeat
CERTS  ?= runs/certs

.PHONY: demo test lint install clean results perf soak proto report-png

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install $(BUNDLE)/calibration.json $(CERTS)/ca.pem $(CERTS)/api-keys.json
	$(BIN)/copur info $(BUNDLE)
	$(BIN)/copur demo --config deploy/cluster.yaml
	$(BIN)/copur scenario run clients/scenarios/flip-one-party.yaml --up --config deploy/cluster-scenarios.yaml --out runs/report
	@echo "scenario report: runs/report/index.html (also report.md, report.json)"

lint: install
	$(BIN)/ruff check services clients tests
	$(BIN)/ruff format --check services clients tests
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache

# mTLS key pairs for every service of both shipped topologies (tls.dir in deploy/cluster*.yaml); ca.pem is the
# last file `copur certs init` writes: its presence means a complete set.
$(CERTS)/ca.pem: | install
	$(BIN)/copur certs init $(CERTS) --topology deploy/cluster.yaml --topology deploy/cluster-scenarios.yaml

# API keys of the HTTP/gRPC front doors (auth.keys_file in deploy/cluster*.yaml): the hashes, and development
# keys in $(CERTS)/keys/{predict,admin}.key that `copur demo`, `scenario run --up` and `bench serve --up` use.
$(CERTS)/api-keys.json: | install
	$(BIN)/copur keys init $(CERTS)

# calibration.json is the last file training writes: its presence means a complete bundle.
$(BUNDLE)/calibration.json: | install
	$(BIN)/copur train --dataset mfeat --out $(BUNDLE) --seed 0

# docs/RESULTS.md and its figures: the full evaluation grid on the mfeat bundle (about 2 minutes on 2 cores).
results: install $(BUNDLE)/calibration.json
	$(BIN)/copur evaluate $(BUNDLE) --out docs/results --markdown docs/RESULTS.md

# docs/PERFORMANCE.md: the purifier micro-benchmark, the service load test (starts and stops the cluster of
# deploy/cluster.yaml, batching on then off) and the report judging the targets (a few minutes on 2 cores).
perf: install $(BUNDLE)/calibration.json $(CERTS)/ca.pem $(CERTS)/api-keys.json
	$(BIN)/copur bench purifier --json runs/bench/purifier.json
	$(BIN)/copur bench serve --up --config deploy/cluster.yaml --json runs/bench/serve.json
	$(BIN)/copur bench report --purifier runs/bench/purifier.json --serve runs/bench/serve.json --out docs/PERFORMANCE.md

# The soak test alone: a cluster under 60 s of load at concurrency 64 (after a warm-up), zero errors and under
# 10 % growth of every process's resident memory (about 2 minutes on 2 cores, training its bundle included).
soak: install
	$(BIN)/pytest -q tests/cluster/test_soak.py

# Regenerate the checked-in gRPC stubs (services/copur/v1/*_pb2*.py[i]) from proto/.
proto: install
	$(BIN)/python -m copur.protogen

# Render the scenario report to a PNG with headless Chromium (Debian package `chromium`), to look at it.
report-png:
	chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,2400 \
	  --screenshot=runs/report/index.png "file://$(CURDIR)/runs/report/index.html"
	@echo "runs/report/index.png"
