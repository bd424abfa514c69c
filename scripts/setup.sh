#!/usr/bin/env bash
# Install everything AlexNet Lab needs into ./.venv (idempotent).
#   scripts/setup.sh          Python packages only: enough for the app on the bundled digits
#   scripts/setup.sh --test   also Debian's chromium (browser tests) and dataset-fashion-mnist
# The first install takes a few minutes and about 6 GB of disk: pip shows its progress.
# PyTorch's CPU-only build instead of the CUDA one (about 2 GB installed instead of 6): README.md, Start.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  local sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  echo "Installing Debian packages: $*"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}

if [[ "${1:-}" == "--test" ]]; then
  need=()
  [[ -x /usr/bin/chromium ]] || need+=(chromium)
  [[ -d /usr/share/datasets/fashion-mnist ]] || need+=(dataset-fashion-mnist)
  if ((${#need[@]})); then
    apt_install "${need[@]}"
  fi
fi

python="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
  # Debian's own python3 ships venv (ensurepip) in a package of its own
  if ! "$python" -c "import ensurepip" 2>/dev/null && command -v apt-get >/dev/null; then
    apt_install python3-venv
  fi
  echo "Creating a Python virtual environment in .venv"
  "$python" -m venv .venv
fi
stamp=.venv/.requirements.sha
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  echo "Updating pip in .venv"
  .venv/bin/python -m pip install --upgrade pip
  if .venv/bin/python -c "import torch" 2>/dev/null; then
    echo "Installing the Python packages of requirements.txt into .venv (PyTorch is there already)"
  else
    echo "Installing the Python packages of requirements.txt into .venv: PyTorch with its NVIDIA libraries,"
    echo "Streamlit and the rest: about 6 GB once installed. This takes a few minutes."
  fi
  .venv/bin/python -m pip install -r requirements.txt
  echo "$want" >"$stamp"
  echo "Installed. Next time this step is skipped until requirements.txt changes."
fi
