#!/usr/bin/env bash
# Install the system packages NetScope's dev services and browser tests need, on Debian 12.
#
# Why a script: CI images and fresh dev machines must get exactly the same packages the
# launchers in src/netscope/devservices expect (Ceph Pacific for RGW, Debian's Prometheus and
# PostgreSQL, Debian's chromium for Playwright). Idempotent: when every binary is already
# present it does not touch apt at all (apt-get update is slow and needs the network).
# Debian's postgresql package may create and start a default cluster on :5432; the dev
# launcher runs its own private cluster on :15432 and never touches that one.
# Run as root (or with sudo). Python packages come from `pip install -e '.[test]'`.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

PACKAGES=(ceph-mon ceph-osd radosgw ceph-common curl prometheus prometheus-alertmanager chromium
          postgresql)
# One binary per package proves the package is there without asking dpkg.
BINARIES=(ceph-mon ceph-osd radosgw ceph radosgw-admin curl prometheus promtool
          prometheus-alertmanager chromium initdb postgres psql)

# Debian keeps the PostgreSQL server binaries off PATH, in /usr/lib/postgresql/<major>/bin
# (where the launcher looks for them too).
have() {
    command -v "$1" >/dev/null 2>&1 && return 0
    case "$1" in
        initdb|postgres) compgen -G "/usr/lib/postgresql/*/bin/$1" >/dev/null ;;
        *) return 1 ;;
    esac
}

missing=()
for bin in "${BINARIES[@]}"; do
    have "$bin" || missing+=("$bin")
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-system-deps: all binaries present, nothing to do"
    exit 0
fi
echo "install-system-deps: missing: ${missing[*]}"

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo --preserve-env=DEBIAN_FRONTEND)
    else
        echo "install-system-deps: must run as root (no sudo found)" >&2
        exit 1
    fi
else
    SUDO=()
fi

APT_OPTS=(-y --no-install-recommends -o DPkg::Lock::Timeout=120)

"${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=120 update
"${SUDO[@]}" apt-get install "${APT_OPTS[@]}" "${PACKAGES[@]}"

still_missing=()
for bin in "${BINARIES[@]}"; do
    have "$bin" || still_missing+=("$bin")
done
if [ "${#still_missing[@]}" -ne 0 ]; then
    echo "install-system-deps: still missing after install: ${still_missing[*]}" >&2
    exit 1
fi
echo "install-system-deps: done"
