"""Tiny models and model files built offline, for the tests, the demo and the benchmarks.

`tiny_sdxl`: an SDXL pipeline at toy sizes with SDXL's block layout (the loader also
recognises its single-file checkpoints, so the demo library draws); `lora_files`: LoRA
files in every format Loracle reads, written for that pipeline, and weight snapshots.
"""
