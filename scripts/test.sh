#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine with Python 3.11, then
# runs it. Arguments go to pytest. CI runs exactly this (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[test.sh] %s\n' "$*"; }

# --- system packages: ZooKeeper for the HA tests (run by the fixtures on a free port),
#     Chromium for the web UI tests (driven by Playwright through its executable path), Java for Spark
need=()
[ -x /usr/share/zookeeper/bin/zkServer.sh ] || need+=(zookeeper)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)  # Spark workers
command -v busybox >/dev/null 2>&1 && command -v docker-registry >/dev/null 2>&1 || need+=(busybox-static docker-registry)  # image tests
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  log "installing Debian packages: ${need[*]}"
  if ! ($SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null); then
    log "WARNING: could not install ${need[*]}; the tests that need them will say so"
  fi
fi

# --- the project, in its own virtualenv
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
log "installing mesos-nb with its test extras"
.venv/bin/python -m pip install -q -e '.[test,notebook,dashboard,dask,spark,ipyparallel,apps]'

# --- pymesos 0.3.15 needs CPython 3.10 (its http-parser does not build on 3.11+)
PY310=""
if python3.10 --version >/dev/null 2>&1; then PY310=$(command -v python3.10); fi
if [ -z "$PY310" ] && command -v pyenv >/dev/null; then
  v=$(pyenv versions --bare | grep -E '^3\.10' | tail -1 || true)
  [ -n "$v" ] && PY310="$(pyenv root)/versions/$v/bin/python3.10"
fi
if [ -n "$PY310" ] && [ -x "$PY310" ]; then
  if ! [ -x .venv-pymesos/bin/python ] || ! .venv-pymesos/bin/python -c 'import pymesos' 2>/dev/null; then
    log "creating the CPython 3.10 virtualenv for pymesos"
    "$PY310" -m venv .venv-pymesos
    .venv-pymesos/bin/python -m pip install -q 'pymesos==0.3.15'
  fi
else
  log "WARNING: no CPython 3.10 found; pymesos compatibility tests will be skipped"
fi

# --- operator tools the compatibility tests drive: the Mesos CLI (avmesos-cli >= 1.3 needs
#     CPython >= 3.12, own virtualenv) and the DC/OS operator client (npm, tests/node)
PY312=$(command -v python3.13 || command -v python3.12 || true)
if [ -n "$PY312" ] && ! [ -x .venv-mesoscli/bin/mesos-cli ]; then
  "$PY312" -m venv .venv-mesoscli && .venv-mesoscli/bin/python -m pip install -q 'avmesos-cli>=1.3.0' \
    || log "WARNING: could not install avmesos-cli; the mesos-cli tests will be skipped"
fi
if command -v npm >/dev/null 2>&1; then
  (cd tests/node && npm ci --no-audit --no-fund >/dev/null) || log "WARNING: npm ci failed in tests/node"
fi

log "ruff"
.venv/bin/ruff check mesos_nb tests bench
log "lint-imports (layers and cycles, see [tool.importlinter] in pyproject.toml)"
.venv/bin/lint-imports
log "bench --quick (fails only when a benchmark breaks)"
.venv/bin/python -m bench --quick
log "pytest"
exec .venv/bin/python -m pytest "$@"
