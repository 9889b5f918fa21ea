#!/usr/bin/env bash
# Installs the Debian packages the RDMA work needs: a stock Debian kernel that
# has soft-RoCE (rdma_rxe) for the test VM, QEMU to boot it, and rdma-core's
# user space (libibverbs, the rxe provider, pyverbs, perftest).
#
# Idempotent: when every package is already installed it does nothing (no
# `apt-get update`), so repeated `make` runs stay fast.  It fails loudly
# (non-zero, with the reason) when something cannot be installed.
#
#   tools/install-system-deps.sh            # install what is missing
#   tools/install-system-deps.sh --check    # only report; exit 1 if missing
set -euo pipefail

PACKAGES=(
    linux-image-amd64   # Debian's kernel: CONFIG_RDMA_RXE=m, booted by virtme-ng
    qemu-system-x86     # runs that kernel (TCG; see tools/vm/run-in-vm.sh)
    busybox-static      # virtme-ng's init inside the guest
    rdma-core           # rdma tool, rxe provider
    ibverbs-utils       # ibv_devinfo, ibv_rc_pingpong
    python3-pyverbs     # pyverbs (Python 3.11 build), exposed to the venv by tools/venv-pyverbs.sh
    libibverbs-dev
    perftest            # ib_write_lat / ib_write_bw, the latency baseline
)

check_only=0
[[ "${1:-}" == "--check" ]] && check_only=1

missing=()
for p in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

kernel_ok() { compgen -G '/boot/vmlinuz-*-amd64' >/dev/null; }

if [[ ${#missing[@]} -eq 0 ]] && kernel_ok; then
    echo "install-system-deps: all ${#PACKAGES[@]} packages present"
    exit 0
fi

if [[ $check_only -eq 1 ]]; then
    echo "install-system-deps: missing: ${missing[*]:-a /boot/vmlinuz-*-amd64 kernel}" >&2
    exit 1
fi

echo "install-system-deps: installing: ${missing[*]:-linux-image-amd64 (no kernel in /boot)}"
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "install-system-deps: not root and no sudo: cannot install ${missing[*]}" >&2; exit 1; }
    SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
if ! "${SUDO[@]}" apt-get update -q; then
    echo "install-system-deps: apt-get update failed" >&2
    exit 1
fi
# --no-install-recommends keeps the install small (no GUI bits for QEMU); the
# set above is complete without recommends (verified).
if ! "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"; then
    echo "install-system-deps: apt-get install failed for: ${PACKAGES[*]}" >&2
    exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
if [[ ${#missing[@]} -ne 0 ]] || ! kernel_ok; then
    echo "install-system-deps: still missing after install: ${missing[*]:-/boot/vmlinuz-*-amd64}" >&2
    exit 1
fi
echo "install-system-deps: done"
