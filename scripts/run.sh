#!/usr/bin/env bash
# Set up (first time only) and start the app on the embedded default models.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/assistant serve "$@"
