#!/usr/bin/env bash
# Install (first time only) and start the dashboard on the bundled digits dataset.
# Extra arguments go to streamlit, e.g. --server.address 0.0.0.0 to open it to a classroom network.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/streamlit run app.py "$@"
