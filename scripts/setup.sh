#!/usr/bin/env bash
# Install everything AlexNet Lab needs into ./.venv (idempotent).
#   scripts/setup.sh          Python packages only: enough for the app on the bundled digits
#   scripts/setup.sh --test   also Debian's chromium (browser tests) and dataset-fashion-mnist
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
  "$python" -m venv .venv
fi
stamp=.venv/.requirements.sha
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.txt
  echo "$want" >"$stamp"
fi
