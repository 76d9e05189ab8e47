#!/usr/bin/env bash
# Set up and run the demo: the agent on a simulated building, with a live view.
# Extra arguments go to `edge-agent demo` (default: --for 60s).
source "$(dirname "$0")/_setup.sh"
make_venv
cd "$ROOT"
if [ $# -eq 0 ]; then set -- --for 60s; fi
exec "$VENV/bin/edge-agent" demo "$@"
