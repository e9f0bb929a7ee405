# One venv for everything. torch is pinned and installed first (CPU build from local disk).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install test demo validate money-curve bench gpu-check gpu-wheels lint clean real-genes-data real-genes

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install $(TORCH)
	$(BIN)/pip install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The README's test command: install + the fast suite.
test: $(STAMP)
	$(BIN)/pytest -m fast -q

# The README's main job: install + a small benchmark end to end on CPU (settings: semicrf/demo.py).
DEMO_DATA ?= data/demo
DEMO_OUT ?= results/demo
demo: $(STAMP)
	$(BIN)/python -m semicrf.demo --data-dir $(DEMO_DATA) --output-dir $(DEMO_OUT)

validate: $(STAMP)
	$(BIN)/pytest -m validation -v

# The money curve (docs/validation.md): semicrf vs its geometric baselines across signals.
money-curve: $(STAMP)
	$(BIN)/python -m semicrf.validation.sweep --scale cpu

bench: $(STAMP)
	$(BIN)/pytest benchmarks -m benchmark --benchmark-only --benchmark-autosave

gpu-check:
	bash benchmarks/gpu_check.sh

# The peer wheel for gpu-check's comparison (PolyForm Noncommercial: measured, never a
# dependency, never committed): download here, carry .wheels/ to the GPU machine.
gpu-wheels:
	$(PY) -m pip download --no-deps --dest .wheels flash-semicrf==0.2.0

# Real genes (docs/real_genomes.md): AUGUSTUS's tutorial training set, 586 Drosophila loci,
# from Debian's augustus-doc package (no root needed), checked against its known checksum.
REAL_GENES_DIR ?= data/real_genes
REAL_GENES_GB := $(REAL_GENES_DIR)/genes.gb
REAL_GENES_SHA256 := 7e58d4a0e345932326fd40ca8beb79f29e1315f08204b34365ed4070daca79bf
REAL_GENES_OUT ?= results/real_genes
REAL_GENES_SCALE ?= full

$(REAL_GENES_GB):
	rm -rf $(REAL_GENES_DIR)/deb $(REAL_GENES_DIR)/pkg
	mkdir -p $(REAL_GENES_DIR)/deb
	cd $(REAL_GENES_DIR)/deb && apt-get download augustus-doc
	dpkg -x $(REAL_GENES_DIR)/deb/augustus-doc_*.deb $(REAL_GENES_DIR)/pkg
	cp $(REAL_GENES_DIR)/pkg/usr/share/doc/augustus/tutorial/results/genes.gb $@.tmp
	echo "$(REAL_GENES_SHA256)  $@.tmp" | sha256sum -c -
	mv $@.tmp $@
	rm -rf $(REAL_GENES_DIR)/deb $(REAL_GENES_DIR)/pkg

real-genes-data: $(REAL_GENES_GB)

# The four models and AUGUSTUS (apt-get install augustus augustus-data) on the test loci:
# about an hour on 2 CPU cores (run 2: 61 min); REAL_GENES_SCALE=smoke runs the machinery in minutes.
real-genes: $(STAMP) $(REAL_GENES_GB)
	$(BIN)/python -m semicrf.genomes.benchmark --genbank $(REAL_GENES_GB) \
		--output-dir $(REAL_GENES_OUT) --scale $(REAL_GENES_SCALE)

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
