#!/usr/bin/env bash
# Install llama-cpp-python (the `llamacpp` test extra) from a wheel cached on this machine; build the
# wheel from source (CPU only, minutes on 2 cores) only when the cache lacks it.
#   usage: .ci/llamacpp_wheel.sh [PYTHON]      (default: python3)
# The cache lives outside the checkout, so a fresh clone on the same machine reuses it.
set -euo pipefail
PYTHON="${1:-python3}"
VERSION="${GISP_LLAMACPP_VERSION:-0.3.36}"
# x86-64 with AVX2, not -march=native: the native build of 0.3.36 on an AVX-512 host (this project's
# CI machine, 2026-12-02) segfaults in a batched Q8_0 matmul (tests/engine/test_gguf_export.py[q8_0]);
# the folder is named by the build, so a native wheel cached by an older script is not reused
CACHE="${GISP_WHEEL_CACHE:-$HOME/.cache/gisp/wheels/x86-64-avx2}"
mkdir -p "$CACHE"
wheel=$(ls "$CACHE"/llama_cpp_python-"$VERSION"-*.whl 2>/dev/null | head -n1 || true)
if [[ -z "$wheel" ]]; then
    echo "building llama-cpp-python $VERSION (CPU) into $CACHE; this takes minutes" >&2
    # Only the library the Python bindings load: no multimodal (mtmd), tools, examples or tests.
    CMAKE_ARGS="${CMAKE_ARGS:-} -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
-DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF \
-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF" \
    CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
        "$PYTHON" -m pip wheel --no-cache-dir --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VERSION" -w "$CACHE"
    wheel=$(ls "$CACHE"/llama_cpp_python-"$VERSION"-*.whl | head -n1)
fi
# forced: a different build of the same version (the native one) may be installed already; forced
# without its dependencies (a forced reinstall of those would reinstall numpy), which the second
# install adds where missing (on a fresh machine: diskcache, which `import llama_cpp` needs)
"$PYTHON" -m pip install -q --force-reinstall --no-deps "$wheel"
"$PYTHON" -m pip install -q "$wheel"
"$PYTHON" -c "import llama_cpp" || { echo "llama-cpp-python from $wheel does not import" >&2; exit 1; }
