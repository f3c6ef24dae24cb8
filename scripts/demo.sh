#!/usr/bin/env bash
# The README's main job: install the project with the service extras, then run the end-to-end
# demo (embedded server, TinyStories upload, a stories260K pruning job, budget selection,
# download, load with transformers, generate). Arguments go to scripts/demo.py (--help).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c "import torch" 2>/dev/null || python3 -m pip install -q torch==2.13.0  # the CPU build on this machine
python3 -m pip install -q -e ".[service]"
exec python3 scripts/demo.py "$@"
