# Two commands: `make run` and `make test`. Both build .venv when it is missing or stale.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
# The Petastorm route's own venv (petastorm 0.13.1 needs pyarrow 14 / numpy < 2; Spark 4.1 refuses them).
PETASTORM_VENV := .venv-petastorm
PETASTORM_STAMP := $(PETASTORM_VENV)/.installed
export SPARK_LOCAL_IP ?= 127.0.0.1
export PYSPARK_PYTHON := $(CURDIR)/$(VENV)/bin/python
export PYSPARK_DRIVER_PYTHON := $(CURDIR)/$(VENV)/bin/python
# spark-submit (used by the Airflow DAG) must be on PATH; it ships inside pyspark in the venv.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
RISKGRAPH_ENV ?= local
export RISKGRAPH_ENV
KEYFILE := .secrets/pseudonym.key

.PHONY: run test java sysdeps venv petastorm-env clean bench

# Debian packages the media layer needs: espeak-ng (synthetic speakers) and sox (telephone
# channel). Installed here, not by hand, so a fresh machine builds with `make run` / `make test`.
SYSDEPS := espeak-ng sox
sysdeps:
	@missing=""; for p in $(SYSDEPS); do command -v $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo ">> installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq$$missing >/dev/null \
	    || { echo "ERROR: could not install$$missing (Debian: apt-get install -y$$missing)" >&2; exit 2; }; \
	fi

java:
	@command -v java >/dev/null 2>&1 || { echo "ERROR: Java not found. riskgraph runs Spark, which needs a JDK 17 (Debian: apt-get install -y openjdk-17-jre-headless) on PATH or JAVA_HOME." >&2; exit 2; }
	@java -version 2>&1 | head -1 | grep -Eq '"(17|21)' || { echo "ERROR: Spark 4.1 needs Java 17 or 21; found: $$(java -version 2>&1 | head -1)" >&2; exit 2; }

venv: $(STAMP)

# pip's local wheel cache holds torch 2.13.0; every other package comes from PyPI.
# The Spark provider pulls pyspark-client, which overwrites pyspark's files: reinstall
# the pinned pyspark without deps afterwards (stack notes).
$(STAMP): requirements.txt requirements-nodeps.txt requirements-airflow.txt requirements-dev.txt setup.py
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "ERROR: $(PYTHON) not found; riskgraph needs Python 3.11." >&2; exit 2; }
	@$(MAKE) --no-print-directory sysdeps
	@echo ">> building $(VENV) (first time takes a few minutes)"
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements.txt -r requirements-airflow.txt -r requirements-dev.txt 2>&1 | grep -v "is ignored" ; test $${PIPESTATUS[0]} -eq 0
	$(VENV)/bin/pip install -q --no-deps -r requirements-nodeps.txt 2>&1 | grep -v "is ignored" ; test $${PIPESTATUS[0]} -eq 0
	$(VENV)/bin/pip install -q --force-reinstall --no-deps "$$(grep -E '^pyspark==' requirements.txt | cut -d' ' -f1)" 2>&1 | grep -v "is ignored" ; test $${PIPESTATUS[0]} -eq 0
	$(VENV)/bin/pip install -q --no-deps -e . 2>&1 | grep -v "is ignored" ; test $${PIPESTATUS[0]} -eq 0
	touch $(STAMP)

petastorm-env: $(PETASTORM_STAMP)

# requirements-petastorm.txt pins the whole environment, so pip installs it --no-deps (it says
# why: petastorm's declared pyspark is not needed to read, and its setuptools<70 clashes with
# torch's >=77). riskgraph goes in --no-deps for riskgraph.petastorm_route; the last step fails
# the build if the route cannot import.
$(PETASTORM_STAMP): requirements-petastorm.txt setup.py
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "ERROR: $(PYTHON) not found; riskgraph needs Python 3.11." >&2; exit 2; }
	@echo ">> building $(PETASTORM_VENV) (Petastorm route, about a minute)"
	test -x $(PETASTORM_VENV)/bin/python || $(PYTHON) -m venv $(PETASTORM_VENV)
	$(PETASTORM_VENV)/bin/pip install -q --no-deps -r requirements-petastorm.txt 2>&1 | grep -v "is ignored" ; test $${PIPESTATUS[0]} -eq 0
	$(PETASTORM_VENV)/bin/pip install -q --no-deps -e . 2>&1 | grep -v "is ignored" ; test $${PIPESTATUS[0]} -eq 0
	$(PETASTORM_VENV)/bin/python -c "import riskgraph.petastorm_route"
	touch $(PETASTORM_STAMP)

# The pseudonymisation secret comes from the environment, never from conf or code.
# Locally we keep one random key per checkout in .secrets/ (git-ignored) so reruns give
# the same pseudonyms; set RISKGRAPH_PSEUDONYM_KEY yourself to use your own.
$(KEYFILE):
	@mkdir -p .secrets && chmod 700 .secrets
	@$(PYTHON) -c "import secrets; print(secrets.token_hex(32))" > $(KEYFILE) && chmod 600 $(KEYFILE)

run: java sysdeps $(STAMP) $(KEYFILE)
	RISKGRAPH_PSEUDONYM_KEY=$${RISKGRAPH_PSEUDONYM_KEY:-$$(cat $(KEYFILE))} $(VENV)/bin/riskgraph run --simulate

test: java sysdeps $(STAMP) $(PETASTORM_STAMP)
	$(VENV)/bin/python -m pytest -q --durations=15 tests

bench: java $(STAMP) $(KEYFILE)
	RISKGRAPH_PSEUDONYM_KEY=$${RISKGRAPH_PSEUDONYM_KEY:-$$(cat $(KEYFILE))} $(VENV)/bin/python bench/bench_pipeline.py

clean:
	rm -rf var spark-warehouse metastore_db derby.log
