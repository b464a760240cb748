"""SDXL pipelines: tiny ones built from config (tests, demo) and real checkpoints."""
