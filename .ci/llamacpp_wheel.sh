#!/usr/bin/env bash
# Install llama-cpp-python (the `llamacpp` test extra) from a wheel cached on this machine; build the
# wheel from source (CPU only, minutes on 2 cores) only when the cache lacks it.
#   usage: .ci/llamacpp_wheel.sh [PYTHON]      (default: python3)
# The cache lives outside the checkout, so a fresh clone on the same machine reuses it.
set -euo pipefail
PYTHON="${1:-python3}"
VERSION="${GISP_LLAMACPP_VERSION:-0.3.36}"
CACHE="${GISP_WHEEL_CACHE:-$HOME/.cache/gisp/wheels}"
mkdir -p "$CACHE"
wheel=$(ls "$CACHE"/llama_cpp_python-"$VERSION"-*.whl 2>/dev/null | head -n1 || true)
if [[ -z "$wheel" ]]; then
    echo "building llama-cpp-python $VERSION (CPU) into $CACHE; this takes minutes" >&2
    # Only the library the Python bindings load: no multimodal (mtmd), tools, examples or tests.
    CMAKE_ARGS="${CMAKE_ARGS:-} -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
-DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF" \
    CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
        "$PYTHON" -m pip wheel --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VERSION" -w "$CACHE"
    wheel=$(ls "$CACHE"/llama_cpp_python-"$VERSION"-*.whl | head -n1)
fi
"$PYTHON" -m pip install -q "$wheel"
