# The README's two commands: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fast mutation clean

# torch comes first with plain pip: `torch==2.13.0` is the CPU build (a resolver that sees
# torch among other pins may pull a multi-GB CUDA build). uv then installs the rest with
# requirements/overrides.txt, which replaces finn-plus' brevitas==0.13.0 pin by 0.13.4
# (0.13.0 crashes on torch 2.13 and conflicts with it on setuptools).
$(STAMP): pyproject.toml requirements/overrides.txt requirements/constraints.txt
	@start=$$(date +%s); \
	test -x $(PY) || $(PYTHON) -m venv $(VENV); \
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0 uv==$$(cat requirements/uv-version.txt) && \
	$(VENV)/bin/uv pip install --quiet --python $(PY) --override requirements/overrides.txt \
		--constraint requirements/constraints.txt -e ".[test]" && \
	$(PY) -m a2qflow.environment && \
	echo "install took $$(( $$(date +%s) - start )) s" && touch $@

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/a2qflow demo --out runs/demo

test: $(STAMP)
	$(PY) -m pytest -q -ra

test-fast: $(STAMP)
	$(PY) -m pytest -q -ra -m "not slow"

# Mutation testing of the safety-critical modules (docs/mutation.md); slow, not part of
# `make test`. mutmut runs in build/mutation/, a copy where models/, build_flows/, hw_configs/
# and deploy/ sit inside a2qflow/ as they are imported (mutmut derives module names from paths),
# with the [tool.mutmut] settings of pyproject.toml. MUTMUT_CHILDREN: parallel workers.
MUTATION_DIR   := build/mutation
MUTMUT_CHILDREN ?= 1
mutation: $(STAMP)
	$(VENV)/bin/uv pip install --quiet --python $(PY) --override requirements/overrides.txt \
		--constraint requirements/constraints.txt -e ".[test,mutation]"
	rm -rf $(MUTATION_DIR) && mkdir -p $(MUTATION_DIR)
	cp -r a2qflow $(MUTATION_DIR)/a2qflow
	for pkg in models build_flows hw_configs deploy; do cp -r $$pkg $(MUTATION_DIR)/a2qflow/$$pkg; done
	cp -r tests pyproject.toml $(MUTATION_DIR)/
	find $(MUTATION_DIR) -name __pycache__ -prune -exec rm -rf {} +
	cd $(MUTATION_DIR) && $(abspath $(VENV))/bin/mutmut run --max-children $(MUTMUT_CHILDREN); \
		$(abspath $(VENV))/bin/mutmut results --all true > results.txt; \
		$(abspath $(PY)) $(abspath tests/mutation_summary.py) < results.txt > summary.md; cat summary.md

clean:
	rm -rf $(VENV) runs build
