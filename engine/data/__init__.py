"""Data files shipped with the engine (the family table), read with importlib.resources."""
