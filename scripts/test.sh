#!/usr/bin/env bash
# Set up and run the tests: installs mosquitto, socat, faketime and systemd from Debian when
# missing (the tests use a real broker and real serial pty pairs; faketime is the outside check
# that nothing reads the wall clock, see the README; systemd's systemd-analyze scores and verifies
# the unit file offline), the agent with its test extras, then pytest.
# Extra arguments go to pytest.
source "$(dirname "$0")/_setup.sh"
need_debs mosquitto socat faketime systemd
make_venv test
cd "$ROOT"
"$VENV/bin/ruff" check --quiet agent drivers hil tests bench
"$VENV/bin/mypy" --strict agent drivers hil
# Plain `pytest` (not `python -m pytest`) so the tests import the installed agent, not the tree.
exec "$VENV/bin/pytest" "$@"
