#!/usr/bin/env bash
# GPU check (issues #16, #14): the gpu-marked tests, the packed/parity tests under the GPU
# image's torch, benchmarks/bench_gpu.py at full size, and benchmarks/bench_server.py with the
# server on the GPU (float32 and the default bfloat16) and benchmarks/bench_ingest.py on the
# GPU, in one command on a CUDA machine.
#
#   benchmarks/gpu_check.sh prepare   # once, on a machine with PyPI: downloads into .whl/ the
#                                     # wheels cde-rag needs that the GPU image lacks
#                                     # (pydantic, qdrant-client, fastapi, uvicorn, ...)
#   benchmarks/gpu_check.sh           # on the GPU machine, from the repo root, .whl/ carried;
#                                     # ~2-4 min on an H200. Logs and bench_gpu.json go to $OUT
#                                     # (or ./gpu-check-out); exit status 0 only if all passed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

if [ "${1:-}" = "prepare" ]; then
  # Python 3.12 / x86-64 wheels (the GPU image's python3); versions as pinned by this venv.
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_28_x86_64 -d .whl \
    "pydantic==2.14.4" "pydantic-core==2.50.5" "annotated-types==0.8.0" \
    "typing-inspection==0.4.5" "typing-extensions==4.16.0" \
    "qdrant-client==1.20.0" "tenacity==9.2.1" "snowballstemmer==3.1.1" \
    "semantic-text-splitter==0.33.1" "h2==4.4.1" "hpack==4.2.0" "hyperframe==6.1.0" \
    "fastapi==0.165.0" "starlette==1.10.0" "uvicorn==0.54.0" "opentelemetry-api==1.45.2"
  exit $?
fi

out="${OUT:-gpu-check-out}"
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/cde-site .whl/*.whl || exit 2
  export PYTHONPATH=/tmp/cde-site
fi
export PYTHONPATH="$PWD:$PWD/integrations${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
} | tee "$out/env.txt"
if ! python3 -c "import cde_rag, torch; assert torch.cuda.is_available()"; then
  echo "cde_rag does not import or CUDA is missing: run 'benchmarks/gpu_check.sh prepare' on" \
    "a machine with PyPI and carry .whl/ (see the script's header)." | tee -a "$out/env.txt"
  exit 2
fi

# The project's addopts need pytest-socket/pytest-asyncio, which the GPU image lacks: override.
python3 -m pytest -o addopts="" -o timeout=300 -p no:cacheprovider -q -rA \
  tests/core/test_gpu.py tests/core/test_packed.py tests/core/test_parity.py 2>&1 |
  tee "$out/pytest.log"
tests=${PIPESTATUS[0]}

python3 benchmarks/bench_gpu.py --device cuda --json "$out/bench_gpu.json" 2>&1 |
  tee "$out/bench_gpu.log"
bench=${PIPESTATUS[0]}

# Dynamic batching on the GPU: 64 clients x 20 one-text requests, batching on vs off.
server=0
for dtype in float32 auto; do
  python3 benchmarks/bench_server.py --device cuda --dtype "$dtype" --threads 4 \
    --json "$out/bench_server_$dtype.json" 2>&1 | tee -a "$out/bench_server.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || server=1
done

# Ingest into the embedded store with the encoder on the GPU (issue #4's ratio, now GPU-fed).
python3 benchmarks/bench_ingest.py --device cuda --docs 4096 2>&1 | tee "$out/bench_ingest.log"
ingest=${PIPESTATUS[0]}

echo "gpu_check: pytest exit $tests, bench_gpu exit $bench, bench_server exit $server," \
  "bench_ingest exit $ingest" | tee -a "$out/env.txt"
[ "$tests" -eq 0 ] && [ "$bench" -eq 0 ] && [ "$server" -eq 0 ] && [ "$ingest" -eq 0 ]
