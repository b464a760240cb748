# syntax=docker/dockerfile:1
# Loracle with a CUDA build of PyTorch. The CUDA runtime comes inside the torch wheels;
# the host needs only the NVIDIA driver and the NVIDIA Container Toolkit.
#   docker compose up -d        (see "Run it on Discord" in README.md)
#   docker compose -f docker-compose.cluster.yml ...   (several GPU machines, Ray; README)
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first, pinned, from PyTorch's CUDA index: it is the largest layer and changes
# least, and an unpinned `pip install torch` could pick a build for the wrong CUDA.
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
RUN pip install "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" --index-url "${TORCH_INDEX_URL}"

WORKDIR /app
COPY pyproject.toml README.md ./
COPY engine ./engine
COPY bot ./bot
# Optional extras of pyproject.toml: EXTRAS=cluster adds Ray for docker-compose.cluster.yml.
# Empty (the default) builds exactly the one-machine image of docker-compose.yml.
ARG EXTRAS=
RUN pip install ".${EXTRAS:+[${EXTRAS}]}" && python -c "import torch, diffusers, discord" \
    && case ",${EXTRAS}," in *,cluster,*) python -c "import ray" ;; esac

# The data folder (database, models, LoRAs, outputs, heartbeat) is a volume: mount ./data.
RUN useradd --create-home --uid 1000 loracle && mkdir -p /data && chown loracle /data
ENV LORACLE_DATA_DIR=/data \
    LORACLE_DEVICE=cuda
VOLUME ["/data"]
USER loracle

# Healthy = the database opens and the bot wrote its heartbeat within the last 90 s.
HEALTHCHECK --interval=60s --timeout=20s --start-period=3m --retries=3 CMD ["loracle", "health"]

# SIGTERM lets the running picture finish; queued jobs stay in the database for the restart.
STOPSIGNAL SIGTERM
ENTRYPOINT ["loracle"]
CMD ["run"]
