#!/usr/bin/env bash
# The savings report's tests with what they need and test.sh leaves out as too heavy for every
# run: the `savings` extra (OpenDSM, about 1.2 GB, in a venv of its own, .venv-savings), and for
# the headless-browser check of the HTML report Debian's chromium and chromedriver, driven by
# Selenium (the `savings-test` extra; docs/savings.md).
# Extra arguments go to pytest.
export EDGE_AGENT_VENV=${EDGE_AGENT_VENV:-$(cd "$(dirname "$0")/.." && pwd)/.venv-savings}
source "$(dirname "$0")/_setup.sh"
need_debs chromium chromium-driver
make_venv test,savings,savings-test
cd "$ROOT"
export EDGE_AGENT_SAVINGS_TESTS=required
exec "$VENV/bin/pytest" tests/test_savings_parts.py tests/test_savings_report.py "$@"
