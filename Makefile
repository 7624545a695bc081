# Everything installs itself: `make demo` and `make test` work on a fresh clone
# with only Python 3.11 (and gcc, for durable-rules' C extension).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 50051
SITE = $(shell $(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

.PHONY: install proto proto-check run demo test lint kb-check kb-mutate docs bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Regenerate the committed stubs in cds/v1 from proto/.
proto: $(STAMP)
	$(PY) -m grpc_tools.protoc -Iproto -I$(SITE) --python_out=. --pyi_out=. \
		--grpc_python_out=. proto/cds/v1/decision_support.proto

# Fails when the committed stubs differ from what the proto generates.
proto-check: $(STAMP)
	@tmp=$$(mktemp -d) && \
	$(PY) -m grpc_tools.protoc -Iproto -I$(SITE) --python_out=$$tmp --pyi_out=$$tmp \
		--grpc_python_out=$$tmp proto/cds/v1/decision_support.proto && \
	for f in decision_support_pb2.py decision_support_pb2.pyi decision_support_pb2_grpc.py; do \
		cmp -s $$tmp/cds/v1/$$f cds/v1/$$f || { echo "cds/v1/$$f is stale: run 'make proto'"; exit 1; }; \
	done; rm -rf $$tmp; echo "generated stubs match proto/"

run: $(STAMP)
	$(PY) -m server --port $(PORT)

demo: $(STAMP)
	$(PY) examples/demo.py

# The knowledge engineer's loop: lint, scenarios and coverage, no gRPC.
kb-check: $(STAMP)
	$(PY) -m kb.check

# Does every scenario set notice a threshold, comparison or condition changed?
kb-mutate: $(STAMP)
	$(PY) -m kb.mutate

# docs/knowledge-base.md, docs/fhir.md and the Questionnaire are generated from the
# code; make test fails when one is stale.
docs: $(STAMP)
	$(PY) -m kb.docs
	$(PY) -m fhir_in.docs

# Writes bench/results.md and bench/results.json (a few minutes).
bench: $(STAMP)
	$(PY) -m bench.run

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: $(STAMP) proto-check lint
	$(PY) -m kb.docs --check
	$(PY) -m fhir_in.docs --check
	$(PY) -m kb.check
	$(PY) -m kb.mutate
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
