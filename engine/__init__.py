"""Loracle's engine: library, CivitAI knowledge, family verdicts and SDXL generation.

Nothing here knows about Discord; `bot/` holds the front ends (Discord and the CLI).
"""

__version__ = "0.1.0"
