# Every target bootstraps .venv itself, so a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test check bench soak install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/siar run --config config

check: $(STAMP)
	$(BIN)/siar check --config config

# Two workers, each test file on one of them (module fixtures stay whole): most tests wait on
# subprocesses and sockets, so this halves the wall time on two cores. PYTEST_WORKERS=0: serial.
PYTEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile

bench: $(STAMP)
	$(BIN)/python -m bench

# The long kill -9 loop: 3,000 posts, 300 SIGKILLs; prints the figures (posts, kills, lost,
# duplicated, recovered, unknown) as JSON and writes them to bench/results/soak.json.
soak: $(STAMP)
	$(BIN)/python -m tests.faults.soak --posts 3000 --kills 300

# On a server (Debian 12, as root): Siar in its own venv, the `siar` command on PATH, the
# systemd units, and a starting configuration in /etc/siar unless one is there already.
PREFIX ?= /opt/siar
install:
	$(PYTHON) -m venv $(PREFIX)
	$(PREFIX)/bin/pip install --quiet --upgrade pip
	$(PREFIX)/bin/pip install --quiet '.[postgres]'
	ln -sf $(PREFIX)/bin/siar /usr/local/bin/siar
	install -m 0644 systemd/siar.service systemd/siar-check.service systemd/siar-check.timer /etc/systemd/system/
	test -e /etc/siar/siar.toml || /usr/local/bin/siar init /etc/siar
	chmod 0600 /etc/siar/.env
	systemctl daemon-reload

clean:
	rm -rf $(VENV) config/state
