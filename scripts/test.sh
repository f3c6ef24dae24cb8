#!/usr/bin/env bash
# The README's test command: install the project with its extras, lint, run the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c "import torch" 2>/dev/null || python3 -m pip install -q torch==2.13.0  # the CPU build on this machine
python3 -m pip install -q -e ".[production,data,gguf,dev,bench]"
python3 -m ruff check .
python3 -m pytest -q -p no:cacheprovider "$@"
