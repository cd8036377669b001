# Image for the worker and the serving plane: Node 20 for the control plane, Python 3.11 with uv for
# the training jobs and the MLflow model servers.
FROM node:20-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-pip \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund

COPY ml/pyproject.toml ml/uv.lock ml/README.md ./ml/
COPY ml/src ./ml/src
RUN python3 -m venv /opt/uv && /opt/uv/bin/pip install --quiet uv==0.13.8 \
 && cd ml && UV_PYTHON_DOWNLOADS=never /opt/uv/bin/uv sync --frozen --no-dev

COPY . .
ENV UV_BIN=/opt/uv/bin/uv MLOPS_STATE_DIR=/state
CMD ["npx", "tsx", "worker/main.ts"]
