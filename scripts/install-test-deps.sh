#!/usr/bin/env bash
# Install what the test suite needs on Debian 12: system packages (only when one is missing),
# then the project with its test extras into .venv. A second run is fast: no apt, and pip only
# when pyproject.toml changed since the last install.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
PACKAGES=(softhsm2 postgresql lego openssl curl ca-certificates python3-venv haproxy
          certspotter prometheus chromium openssh-client openssh-server)

log() { printf 'install-test-deps: %s\n' "$*" >&2; }

missing=()
for pkg in "${PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
    [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done
# The PostgreSQL server binaries come with postgresql-NN; make sure some version is present.
if ! ls -d /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    [[ " ${missing[*]-} " == *" postgresql "* ]] || missing+=(postgresql)
fi

if ((${#missing[@]})); then
    if [[ "$(id -u)" != 0 ]]; then
        log "missing Debian packages: ${missing[*]}; run this script as root to install them"
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt_opts=(-y -q -o DPkg::Lock::Timeout=600)
    log "installing ${missing[*]}"
    # Update the package lists only when one of the packages is unknown to apt.
    if ! apt-get install "${apt_opts[@]}" --no-install-recommends "${missing[@]}"; then
        apt-get update -q -o DPkg::Lock::Timeout=600
        apt-get install "${apt_opts[@]}" --no-install-recommends "${missing[@]}"
    fi
else
    log "Debian packages present"
fi

# Microsoft's SARIF validator (the scanner's SARIF report is checked with it): an npm package
# with a self-contained binary, installed under var/tools (npm itself from apt when missing).
SARIF_TOOL=var/tools/sarif/node_modules/@microsoft/sarif-multitool-linux/Sarif.Multitool
if [[ ! -x "$SARIF_TOOL" ]]; then
    if ! command -v npm >/dev/null; then
        log "installing npm (for the SARIF validator)"
        apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends npm \
            || { apt-get update -q && apt-get install -y -q --no-install-recommends npm; }
    fi
    log "npm install @microsoft/sarif-multitool-linux into var/tools/sarif"
    mkdir -p var/tools/sarif
    npm install --silent --no-audit --no-fund --prefix var/tools/sarif \
        @microsoft/sarif-multitool-linux@5.7.0
    chmod +x "$SARIF_TOOL"
fi

if [[ ! -x "$VENV/bin/pip" ]]; then
    log "creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi

stamp="$VENV/.certyard-test-deps"
want="$(cat pyproject.toml; "$VENV/bin/python" -VV)"
want="$(printf '%s' "$want" | sha256sum | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$VENV/bin/certyard" \
      && -x "$VENV/bin/certbot" && -x "$VENV/bin/pytest" ]]; then
    log "$VENV up to date"
else
    log "pip install -e '.[test]' into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e '.[test]'
    printf '%s\n' "$want" >"$stamp"
fi
