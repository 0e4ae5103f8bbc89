# cde-rag serve: the OpenAI-compatible embedding and search server (CPU image).
#
#   docker build -t cde-rag .
#   docker run -p 8000:8000 -v hf:/models/hf cde-rag --qdrant-url http://HOST:6333
#
# docker-compose.yml runs it beside Qdrant (docker compose --profile server up -d).
# For CUDA, build with --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126
FROM python:3.11-slim

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HOME=/models/hf \
    TOKENIZERS_PARALLELISM=false

WORKDIR /app
RUN pip install torch --index-url "${TORCH_INDEX_URL}"
COPY pyproject.toml README.md ./
COPY cde_rag ./cde_rag
COPY integrations ./integrations
RUN pip install ".[server]" && useradd --create-home cde && mkdir -p /models/hf \
    && chown cde /models/hf
USER cde

EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s \
    CMD python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/ready', timeout=4)"
ENTRYPOINT ["cde-rag", "serve", "--host", "0.0.0.0", "--port", "8000"]
