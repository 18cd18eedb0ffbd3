# The two set-up commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
BUNDLE ?= runs/mfeat
CERTS  ?= runs/certs

.PHONY: demo test test-packages lint install clean results perf soak proto report-png \
        docker-packages docker-image compose-demo compose-faults test-containers churn

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml clients/pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ./clients -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install $(BUNDLE)/bank.safetensors $(CERTS)/ca.pem $(CERTS)/api-keys.json
	$(BIN)/copur info $(BUNDLE)
	$(BIN)/copur demo --config deploy/cluster.yaml
	$(BIN)/copur scenario run clients/scenarios/flip-one-party.yaml --up --config deploy/cluster-scenarios.yaml --out runs/report
	@echo "scenario report: runs/report/index.html (also report.md, report.json)"

lint: install
	$(BIN)/ruff check services clients tests tools
	$(BIN)/ruff format --check services clients tests tools
	$(BIN)/mypy

test: lint test-packages
	$(BIN)/pytest -q

# What `make test` needs from Debian: promtool and prometheus (the alert rules' checks and the live alert test) and
# chromium (the scenario report rendered in a real browser); installed only when missing.
test-packages:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null && command -v chromium >/dev/null || { \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus chromium \
	  || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	       prometheus chromium; }; }

# The container tests (tests/containers, marker `containers`): the image built offline, a real docker compose
# bring-up, predictions, a live attack and container faults; the second step of .ci/run.
test-containers: install docker-packages
	$(BIN)/pytest -q -s --durations=5 -m containers tests/containers

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

# The mfeat bundle. Calibration writes bank.safetensors (the consistency bank) and then calibration.json, the last
# file training writes: a bundle without the bank predates it and is calibrated again, anything else is trained.
$(BUNDLE)/bank.safetensors: | install
	if [ -f $(BUNDLE)/calibration.json ]; then $(BIN)/copur calibrate $(BUNDLE); \
	else $(BIN)/copur train --dataset mfeat --out $(BUNDLE) --seed 0; fi

# The next bundle of a rolling upgrade: mfeat retrained with another seed on the same split (other extractors,
# another embedding space, another bundle id); `make churn` rolls the cluster out to it and back.
runs/mfeat-next/bank.safetensors: | install
	$(BIN)/copur train --dataset mfeat --out runs/mfeat-next --seed 1 --split-seed 0 --no-progress

# Stalled parties, a foreign bundle, a rollout and a rollback under load on the local cluster; the table in
# docs/OPERATIONS.md (exit 1 when a check fails).
churn: install $(BUNDLE)/bank.safetensors runs/mfeat-next/bank.safetensors $(CERTS)/ca.pem $(CERTS)/api-keys.json
	$(BIN)/copur bench churn --config deploy/cluster-scenarios.yaml --next-bundle runs/mfeat-next \
	  --json runs/bench/churn.json --markdown docs/OPERATIONS.md

# Two more data sets for the report: scikit-learn's 8x8 digits (4 parties, one per quadrant) and its breast cancer
# table (30 columns, 569 samples, 2 classes) through the csv loader, split into 5 parties of 6 columns.
runs/digits/bank.safetensors: | install
	$(BIN)/copur train --dataset digits --out runs/digits --seed 0

runs/tables/breast-cancer.csv: | install
	mkdir -p runs/tables
	$(BIN)/python -c "from sklearn.datasets import load_breast_cancer; \
	load_breast_cancer(as_frame=True).frame.to_csv('$@', index=False)"

runs/breast-cancer/bank.safetensors: runs/tables/breast-cancer.csv | install
	$(BIN)/copur train --dataset csv --data-dir runs/tables/breast-cancer.csv --label target \
	  --divisions '0 6 12 18 24 30' --out runs/breast-cancer --seed 0

# docs/RESULTS.md and its figures: every defense under the worst of the attack suite (the headline) and the
# per-attack grid on the mfeat bundle, with digits and breast cancer summarised (about 45 minutes on 2 cores).
results: install $(BUNDLE)/bank.safetensors runs/digits/bank.safetensors runs/breast-cancer/bank.safetensors
	$(BIN)/copur evaluate runs/digits --out docs/results/digits --liars 0,1,2
	$(BIN)/copur evaluate runs/breast-cancer --out docs/results/breast-cancer --liars 0,1,2
	$(BIN)/copur evaluate $(BUNDLE) --out docs/results --markdown docs/RESULTS.md \
	  --with docs/results/digits/results.json --with docs/results/breast-cancer/results.json

# docs/PERFORMANCE.md: the purifier micro-benchmark, the service load test (starts and stops the cluster of
# deploy/cluster.yaml, batching on then off) and the report judging the targets (a few minutes on 2 cores).
perf: install $(BUNDLE)/bank.safetensors $(CERTS)/ca.pem $(CERTS)/api-keys.json
	$(BIN)/copur bench purifier --json runs/bench/purifier.json
	$(BIN)/copur bench serve --up --config deploy/cluster.yaml --json runs/bench/serve.json
	$(BIN)/copur bench report --purifier runs/bench/purifier.json --serve runs/bench/serve.json --out docs/PERFORMANCE.md

# The soak test alone: a cluster under 60 s of load at concurrency 64 (after a warm-up), zero errors and under
# 10 % growth of every process's resident memory (about 2 minutes on 2 cores, training its bundle included).
soak: install
	$(BIN)/pytest -q tests/cluster/test_soak.py

# Regenerate the checked-in gRPC stubs (clients/copur_client/{v1,oip}/*_pb2*.py[i]) from proto/.
proto: install
	$(BIN)/python -m copur.operations.protogen

# Render the scenario report to a PNG with headless Chromium (Debian package `chromium`), to look at it.
report-png:
	chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,2400 \
	  --screenshot=runs/report/index.png "file://$(CURDIR)/runs/report/index.html"
	@echo "runs/report/index.png"

# --- containers ----------------------------------------------------------------------------------------------
# What the container targets need from Debian: the engine (docker.io: dockerd, containerd, runc), debootstrap for
# the offline base image, iproute2 and iptables for the link faults; installed only when missing.
docker-packages:
	@command -v dockerd >/dev/null && command -v debootstrap >/dev/null && command -v tc >/dev/null \
	  && command -v iptables >/dev/null || { \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io debootstrap iproute2 iptables \
	  || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io debootstrap \
	       iproute2 iptables; }; }

# The base image (debootstrap of Debian bookworm + docker import) unless present, the wheelhouse, and copur:latest
# built with OFFLINE=1; a docker engine is started for it when none answers, and stopped again.
docker-image: install docker-packages
	$(BIN)/copur compose image

# docker compose for real: build, up (an adversary before every party), wait for every healthcheck, the demo's
# steps and the flip-one-party scenario from the host, the accuracies printed, everything taken down.
compose-demo: install docker-packages
	$(BIN)/copur compose demo

# The container fault table of docs/OPERATIONS.md (kill, pause, disconnect, lossy and slow link, fusion restart
# under load), measured on the default compose cluster.
compose-faults: install docker-packages
	$(BIN)/copur compose faults --markdown docs/OPERATIONS.md

# The monitoring files alone (docs/OPERATIONS.md, "Monitoring"): the alert rules checked and unit-tested with
# promtool, both example scrape configurations checked, the Kubernetes ConfigMap copies current.
.PHONY: rules-check
rules-check: install test-packages
	promtool check rules deploy/prometheus/rules.yml
	cd deploy/prometheus && promtool test rules tests.yml
	promtool check config deploy/prometheus/prometheus.yml
	promtool check config deploy/prometheus/prometheus-k8s.yml
	$(BIN)/python tools/k8s_monitoring.py --check
