# Two commands for a fresh machine: `make demo` (the side-by-side reproduction) and `make test`.
# `make test-compose` runs docker-compose.yml under a real Docker engine (tests/containers/).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo lab test test-compose lint rabbitmq compose-tool bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[lab,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m leaklab demo

lab: $(STAMP)
	$(BIN)/python -m leaklab run ws-read-handler

test: $(STAMP) rabbitmq compose-tool
	$(BIN)/pytest

# The engine the docker client reaches, else the kit's at $(DOCKER_ENGINE_KIT) (as root);
# stops at the first failure, since each step builds on the one before.
DOCKER_ENGINE_KIT ?= ../shared/docker/engine.sh
export DOCKER_ENGINE_KIT
test-compose: $(STAMP)
	$(BIN)/pytest -m compose -x -v tests/containers

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

rabbitmq:
	scripts/ensure-rabbitmq.sh

# Debian's docker-compose validates compose files without a Docker engine (tests/test_containers.py).
compose-tool:
	@command -v docker-compose >/dev/null 2>&1 || { \
		apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker-compose; }
	@docker-compose version --short

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
