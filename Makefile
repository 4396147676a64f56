# FlowOps developer tasks.
#
#   make demo    zero-server demo (SQLite, settings.local)
#   make test    test suite against real PostgreSQL + Redis (found or started
#                by scripts/ensure_services.sh); extra pytest options in
#                PYTEST_ARGS, e.g.  make test PYTEST_ARGS="-k budget -x"
#   make lint    ruff
#   make clean   remove the venv, throwaway services, SQLite files, caches

# Prefer python3.11 (the project's version) when it is installed.
PYTHON ?= $(shell command -v python3.11 >/dev/null 2>&1 && echo python3.11 || echo python3)
VENV := .venv
VENV_PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# pytest-django lets DJANGO_SETTINGS_MODULE from the environment win over
# pyproject.toml, so pin it: a developer's exported settings.local must not
# turn `make test` into a SQLite run.
TEST_SETTINGS ?= settings.test

.PHONY: venv demo test-deps services browser test lint clean

venv: $(VENV)/.installed

# The stamp is redone only when the dependencies change.
$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(VENV_PY) || $(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install --upgrade pip
	$(VENV_PY) -m pip install -r requirements.txt -e .
	touch $@

demo: venv
	$(VENV_PY) manage.py migrate --noinput
	$(VENV_PY) manage.py runflow examples/hello.py --input FlowOps
	@echo
	@echo "Next steps:"
	@echo "  create an admin user:  $(VENV_PY) manage.py createsuperuser"
	@echo "  start the server:      $(VENV_PY) manage.py serve"
	@echo "  the CLI works too:     $(VENV)/bin/flowops run examples/hello.py --input FlowOps"

test-deps: $(VENV)/.installed-dev

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(VENV_PY) -m pip install -r requirements-dev.txt
	touch $@

# Always rerun: a server found last time may be gone now. Written through a
# temporary file so a failure never leaves a half-written .services.env.
services:
	bash scripts/ensure_services.sh > .services.env.tmp || { rm -f .services.env.tmp; exit 1; }
	mv .services.env.tmp .services.env
	@cat .services.env

# pytest exits 5 when it collected no tests: that is a failure too (it is
# non-zero, so make stops either way; the message says why).
test: test-deps services browser
	@set -a; . ./.services.env; set +a; \
	DJANGO_SETTINGS_MODULE=$(TEST_SETTINGS) $(VENV_PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5), failing" >&2; fi; \
	exit $$rc

# Headless Chromium for the browser smoke test (apt-get when root; else it is skipped).
browser:
	bash scripts/ensure_browser.sh

lint: test-deps
	$(VENV)/bin/ruff check .

# Stop the throwaway servers first: deleting the data of a running
# PostgreSQL leaves an orphan process behind.
clean:
	-bash scripts/stop_services.sh
	rm -rf $(VENV) .services .services.env .services.env.tmp
	rm -f flowops.sqlite3*
	rm -rf .pytest_cache .ruff_cache build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
