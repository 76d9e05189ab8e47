# Sourced by demo.sh and test.sh: the one place that prepares a machine.
# Debian 12 / Raspberry Pi OS Bookworm: installs the Debian packages that are missing (with sudo
# when not root), then a virtual environment in .venv with the agent installed from this tree
# (non-editable, as on a gateway: what runs is what a wheel carries).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${EDGE_AGENT_VENV:-$ROOT/.venv}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# need_debs PKG... : install the Debian packages that are not installed yet.
need_debs() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# make_venv EXTRAS : create .venv if needed and install the agent (with the given extras).
make_venv() {
  local extras=${1:-}
  if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "setup: Python 3.11 or newer is needed (Debian 12 and Raspberry Pi OS Bookworm have it)" >&2
    exit 1
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" 2>/dev/null || { need_debs python3-venv; python3 -m venv "$VENV"; }
  fi
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet "$ROOT${extras:+[$extras]}"
}
