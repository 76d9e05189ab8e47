#!/usr/bin/env bash
# Install or update Building Edge Agent on this gateway (Debian 12 / Raspberry Pi OS Bookworm),
# idempotently: run it again after a `git pull` to update. As root: `sudo ./scripts/install.sh`.
#
# 1. the Debian packages it needs (python3-venv), then /opt/edge-agent, a virtual environment
#    with the agent installed from this tree (what the unit runs);
# 2. the README and the unit file beside it (Documentation= points there; `edge-agent install`
#    takes the unit from there when run again by hand);
# 3. `edge-agent install`: the system user and its device groups, /etc/edge-agent/site.yaml from
#    the demo config when there is none, the unit installed and enabled, started when the config
#    is valid (agent/install.py says how each step stays idempotent).
# Extra arguments go to `edge-agent install`; `edge-agent install --dry-run` (from a checkout's
# .venv too) only says what it would do. `edge-agent uninstall` undoes it, keeping the data and
# the config.
if [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: this sets up a system service: run it as root (sudo $0)" >&2
  exit 1
fi
export EDGE_AGENT_VENV=/opt/edge-agent
source "$(dirname "$0")/_setup.sh"
need_debs python3-venv
make_venv
install -m 0644 "$ROOT/README.md" "$VENV/README.md"
install -m 0644 "$ROOT/systemd/edge-agent.service" "$VENV/edge-agent.service"
was_active=$(systemctl is-active edge-agent.service 2>/dev/null || true)
"$VENV/bin/edge-agent" install --unit "$VENV/edge-agent.service" "$@"
if [ "$was_active" = "active" ]; then
  echo "install.sh: the service was running: restarting it on what is installed now"
  systemctl restart edge-agent.service
fi
