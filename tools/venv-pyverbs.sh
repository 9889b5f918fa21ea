#!/usr/bin/env bash
# Makes the project's venv ready for the RDMA work, idempotently:
#   * exposes Debian's pyverbs (python3-pyverbs, built for CPython 3.11) to the
#     venv -- only the pyverbs package, not all of dist-packages: a directory
#     inside the venv holds one symlink to it and a .pth file adds that
#     directory to sys.path;
#   * installs virtme-ng (the `vng` VM runner) into the venv.
#
#   tools/venv-pyverbs.sh [VENV]     (default: <repo>/.venv, or $VENV)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${1:-${VENV:-$REPO/.venv}}
PY="$VENV/bin/python"
SYSTEM_PYVERBS=${SYSTEM_PYVERBS:-/usr/lib/python3/dist-packages/pyverbs}

[[ -x "$PY" ]] || { echo "venv-pyverbs: no venv at $VENV (create it first)" >&2; exit 1; }
[[ -d "$SYSTEM_PYVERBS" ]] || { echo "venv-pyverbs: $SYSTEM_PYVERBS missing: run tools/install-system-deps.sh" >&2; exit 1; }

pyver=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if ! compgen -G "$SYSTEM_PYVERBS/device.cpython-${pyver/./}-*.so" >/dev/null; then
    echo "venv-pyverbs: Debian's pyverbs has no build for Python $pyver (venv $VENV); it needs the venv on Python 3.11" >&2
    exit 1
fi

site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
shim="$VENV/pyverbs-shim"
mkdir -p "$shim"
if [[ "$(readlink "$shim/pyverbs" 2>/dev/null || true)" != "$SYSTEM_PYVERBS" ]]; then
    ln -sfn "$SYSTEM_PYVERBS" "$shim/pyverbs"
fi
pth="$site/dataplane-pyverbs.pth"
if [[ "$(cat "$pth" 2>/dev/null || true)" != "$shim" ]]; then
    printf '%s\n' "$shim" > "$pth"
fi
"$PY" -c 'import pyverbs.device, pyverbs.qp, pyverbs.mr' \
    || { echo "venv-pyverbs: pyverbs does not import in $VENV" >&2; exit 1; }

if [[ ! -x "$VENV/bin/vng" ]]; then
    "$PY" -m pip install -q 'virtme-ng>=1.30' \
        || { echo "venv-pyverbs: pip install virtme-ng failed" >&2; exit 1; }
fi
echo "venv-pyverbs: pyverbs and virtme-ng ready in $VENV"
