# lichen: quick start is `make serve` and `make test`.

PYTHON ?= python3
VENV ?= .venv
VENV_ASAN ?= .venv-asan
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TEST_TIMEOUT ?= 120
FUZZ_SECONDS ?= 60
FUZZ_CI_SECONDS ?= 30
PYTEST_ARGS ?=

CC ?= gcc
SAN_CFLAGS := -std=c11 -Wall -Wextra -Werror -g -O1 -pthread \
	-fsanitize=address,undefined -fno-sanitize-recover=all -Icsrc
FUZZ_CFLAGS := -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=all -Icsrc

C_TESTS := $(wildcard tests/c/test_*.c)
FUZZ_TARGETS := $(wildcard fuzz/fuzz_*.c)
C_SOURCES := $(wildcard csrc/*.c csrc/*.h)
FORMAT_C := $(wildcard csrc/*.c csrc/*.h tests/c/*.c tests/c/*.h fuzz/*.c)

# Root runs apt-get itself; anyone else needs sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: bench-tools all deps test-tools venv build serve ctest fuzz-replay fuzz fuzz-ci \
	test test-asan format bench clean distclean

all: build

# Debian packages, installed only when a header or tool is really missing.
deps:
	@missing=""; \
	command -v gcc >/dev/null 2>&1 || missing="$$missing gcc"; \
	command -v make >/dev/null 2>&1 || missing="$$missing make"; \
	$(PYTHON) -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
		|| missing="$$missing python3-dev"; \
	$(PYTHON) -c 'import ensurepip, venv' >/dev/null 2>&1 \
		|| missing="$$missing python3-venv"; \
	[ -e /usr/include/zlib.h ] || missing="$$missing zlib1g-dev"; \
	[ -e /usr/include/openssl/ssl.h ] || missing="$$missing libssl-dev"; \
	if [ -n "$$missing" ]; then \
		echo "== installing Debian packages:$$missing"; \
		command -v apt-get >/dev/null 2>&1 || { \
			echo "missing:$$missing (install them, then run make again)"; \
			exit 1; }; \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing; \
	fi

# Tools of the abuse and soak tests (slowhttptest, wrk), of the browser
# test (chromium and its driver), of the static files' tests (curl,
# strace) and of the tests behind a proxy (nginx, haproxy): Debian packages
# installed when missing (one by one if they cannot all be: Ubuntu names its
# browser otherwise); without them those tests are skipped.
test-tools:
	@missing=""; \
	command -v slowhttptest >/dev/null 2>&1 || missing="$$missing slowhttptest"; \
	command -v wrk >/dev/null 2>&1 || missing="$$missing wrk"; \
	command -v curl >/dev/null 2>&1 || missing="$$missing curl"; \
	command -v strace >/dev/null 2>&1 || missing="$$missing strace"; \
	command -v openssl >/dev/null 2>&1 || missing="$$missing openssl"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null 2>&1 || missing="$$missing chromium-driver"; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing="$$missing haproxy"; \
	if [ -n "$$missing" ]; then \
		if command -v apt-get >/dev/null 2>&1; then \
			echo "== installing Debian packages:$$missing"; \
			$(SUDO) apt-get update -q && \
			{ DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q \
				$$missing || for p in $$missing; do \
				DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install \
				-y -q $$p || echo "== could not install $$p"; done; }; \
		else echo "== missing:$$missing (their tests will be skipped)"; fi; \
	fi

# The stamp is remade when the build inputs change, so `make test` never
# runs a stale extension.
venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py $(C_SOURCES) | deps
	@test -x $(PY) || { echo "== creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	$(PIP) install -q --upgrade pip
	$(PIP) install -q setuptools wheel "greenlet>=3"
	$(PIP) install -q --no-build-isolation -e '.[test]' pytest-timeout
	@touch $@

build: | deps
	@test -x $(PY) || $(MAKE) venv
	$(PIP) install -q --no-build-isolation -e .
	@touch $(VENV)/.installed

serve: venv
	$(PY) -m lichen --bind 127.0.0.1:8000 examples.hello

ctest:
	@mkdir -p tests/c/bin
	@if [ -z "$(C_TESTS)" ]; then echo "== no C unit tests"; fi
	@set -e; for src in $(C_TESTS); do \
		name=$$(basename $$src .c); \
		echo "== ctest $$name"; \
		$(CC) $(SAN_CFLAGS) $$src -o tests/c/bin/$$name -lz -lssl -lcrypto; \
		./tests/c/bin/$$name; \
	done

fuzz-replay:
	@if [ ! -f fuzz/replay.c ]; then echo "== fuzz-replay: no fuzz/replay.c"; exit 0; fi; \
	mkdir -p fuzz/bin; set -e; \
	for src in $(FUZZ_TARGETS); do \
		name=$$(basename $$src .c); corpus=fuzz/corpus/$${name#fuzz_}; \
		echo "== fuzz-replay $$name ($$corpus)"; \
		$(CC) $(SAN_CFLAGS) fuzz/replay.c $$src -o fuzz/bin/replay_$$name; \
		if [ -d $$corpus ]; then ./fuzz/bin/replay_$$name $$corpus; \
		else echo "   no corpus directory $$corpus"; fi; \
	done

fuzz:
	@command -v clang >/dev/null 2>&1 || { \
		echo "== installing clang"; \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q clang; }
	@mkdir -p fuzz/bin fuzz/artifacts; set -e; \
	for src in $(FUZZ_TARGETS); do \
		name=$$(basename $$src .c); short=$${name#fuzz_}; \
		corpus=fuzz/corpus/$$short; mkdir -p $$corpus; \
		dict="-dict=fuzz/http1.dict"; \
		echo "== fuzz $$name for $(FUZZ_SECONDS)s"; \
		clang $(FUZZ_CFLAGS) $$src -o fuzz/bin/$$name; \
		./fuzz/bin/$$name -max_total_time=$(FUZZ_SECONDS) \
			-artifact_prefix=fuzz/artifacts/$$name- $$dict $$corpus; \
	done

# Every fuzz target for FUZZ_CI_SECONDS under ASan+UBSan, from the corpus and
# the dictionary; inputs it finds go to a temporary directory, not the
# repository. Fails on any crash, leak, timeout or broken invariant, and then
# keeps the temporary directory with the crashing input.
fuzz-ci:
	@command -v clang >/dev/null 2>&1 || { \
		echo "== installing clang"; \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q clang; }
	@mkdir -p fuzz/bin; work=$$(mktemp -d "$${TMPDIR:-/tmp}/lichen-fuzz.XXXXXX"); \
	for src in $(FUZZ_TARGETS); do \
		name=$$(basename $$src .c); short=$${name#fuzz_}; \
		mkdir -p $$work/$$short fuzz/corpus/$$short; \
		echo "== fuzz-ci $$name for $(FUZZ_CI_SECONDS)s"; \
		clang $(FUZZ_CFLAGS) $$src -o fuzz/bin/$$name || exit 1; \
		./fuzz/bin/$$name -max_total_time=$(FUZZ_CI_SECONDS) -timeout=10 \
			-rss_limit_mb=2048 -print_final_stats=1 -dict=fuzz/http1.dict \
			-artifact_prefix=$$work/$$name- $$work/$$short \
			fuzz/corpus/$$short > $$work/$$name.log 2>&1; \
		rc=$$?; \
		grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' \
			$$work/$$name.log | sed 's/^/   /'; \
		if [ $$rc -ne 0 ]; then tail -n 60 $$work/$$name.log; \
			echo "== fuzz-ci $$name FAILED (exit $$rc); inputs and log in $$work"; \
			exit 1; fi; \
	done; rm -rf $$work

# The whole suite: C units, fuzz corpora, pytest, and pytest again against
# the extension built with AddressSanitizer and UBSan (without the tests
# marked heavy: the abuse and soak runs).
test: venv test-tools ctest fuzz-replay fuzz-ci
	@echo "== pytest"
	$(PY) -m pytest -q -p no:cacheprovider --timeout=$(TEST_TIMEOUT) \
		$(PYTEST_ARGS) tests
	@echo "== pytest against the ASan/UBSan build"
	$(MAKE) --no-print-directory test-asan

# The sanitized extension is built in a copy of the tree with its own venv,
# so the normal build in lichen/ is left alone.
test-asan: deps
	@test -x $(VENV_ASAN)/bin/python || $(PYTHON) -m venv $(VENV_ASAN)
	$(VENV_ASAN)/bin/pip install -q --upgrade pip
	$(VENV_ASAN)/bin/pip install -q setuptools wheel "greenlet>=3" \
		pytest-timeout
	rm -rf $(VENV_ASAN)/src && mkdir -p $(VENV_ASAN)/src
	tar -c --exclude=./.git --exclude='./.venv*' --exclude='*.so' \
		--exclude=__pycache__ --exclude=./build --exclude=./bench/.venv-peers \
		--exclude=./bench/.baseline . | tar -x -C $(VENV_ASAN)/src
	cd $(VENV_ASAN)/src && LICHEN_SANITIZE=1 ../bin/pip install -q \
		--no-build-isolation -e '.[test]'
	# PYTHONMALLOC=malloc: Python objects come from malloc, not from
	# pymalloc's arenas, so that the sanitizer sees the engine write past
	# one or use it after it was freed.
	cd $(VENV_ASAN)/src && \
		PYTHONMALLOC=malloc \
		LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libstdc++.so.6)" \
		ASAN_OPTIONS=detect_leaks=0:quarantine_size_mb=8 \
		../bin/python -m pytest -q -p no:cacheprovider -m "not heavy" \
		--timeout=$(TEST_TIMEOUT) $(PYTEST_ARGS) tests

format:
	@if command -v clang-format >/dev/null 2>&1; then \
		echo "== clang-format"; clang-format -i $(FORMAT_C); \
	else echo "clang-format not installed (apt-get install clang-format)"; fi
	@if command -v ruff >/dev/null 2>&1; then \
		echo "== ruff format"; ruff format lichen tests examples; \
	elif command -v black >/dev/null 2>&1; then \
		echo "== black"; black -q lichen tests examples; \
	else echo "ruff/black not installed: Python left as is"; fi

# The TLS benchmark's peer and scanner: Debian packages installed when
# missing.
bench-tools:
	@missing=""; \
	command -v wrk >/dev/null 2>&1 || missing="$$missing wrk"; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	command -v testssl >/dev/null 2>&1 || missing="$$missing testssl.sh"; \
	command -v openssl >/dev/null 2>&1 || missing="$$missing openssl"; \
	if [ -n "$$missing" ]; then \
		echo "== installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive \
			$(SUDO) apt-get install -y -q $$missing; \
	fi

bench: venv bench-tools
	$(PYTHON) bench/run.py $(BENCH_ARGS)
	$(PYTHON) bench/ws.py
	$(PYTHON) bench/tls.py
	$(PYTHON) bench/testssl.py --doc docs/tls.md

clean:
	rm -rf build dist *.egg-info lichen/*.so tests/c/bin fuzz/bin fuzz/artifacts \
		.pytest_cache
	find . -path ./.venv -prune -o -path ./$(VENV_ASAN) -prune -o \
		-name __pycache__ -type d -print -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(VENV_ASAN)
