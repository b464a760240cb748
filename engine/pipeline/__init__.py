"""SDXL pipelines: tiny ones built from config (tests, demo) and real checkpoints.

Importing this package changes nothing in the process: request dataclasses import the
sampler table from here, and a front end that only plans must not find its environment
rewritten. Whatever is about to import diffusers calls `prepare_environment()` first.
"""

import os


def prepare_environment() -> None:
    """Settings diffusers and transformers read when first imported; an explicit value
    in the environment wins.

    Nothing in Loracle may fetch weights, configs or tokenizers from a model hub;
    huggingface_hub reads HF_HUB_OFFLINE once, when first imported (loader.hub_offline()
    enforces it again around every load in case it was imported earlier). transformers
    warns at import about optional image processors (torchvision) that an SDXL
    text-to-image bot never uses; the bot's log and the CLI's terminal are for real problems.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
