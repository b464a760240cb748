"""SDXL pipelines: tiny ones built from config (tests, demo) and real checkpoints."""

import os

# Nothing in Loracle may fetch weights, configs or tokenizers from a model hub. huggingface_hub
# reads this once, when first imported, so set it before anything here imports diffusers;
# loader.hub_offline() enforces it again around every load in case it was imported earlier.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# transformers warns at import about optional image processors (torchvision) that an SDXL
# text-to-image bot never uses; keep the bot's log and the CLI's terminal for real problems.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
