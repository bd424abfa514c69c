#!/usr/bin/env bash
# Install (first time only) and run the whole test suite, browser test included.
# Extra arguments go to pytest, e.g. scripts/test.sh -k variants
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test || exit 1
.venv/bin/python -m pytest "$@"
code=$?
if [[ $code -eq 5 ]]; then
  echo "pytest collected no tests: treating that as a failure (the suite always has tests)." >&2
  exit 1
fi
exit $code
