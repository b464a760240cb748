"""Reusable builders of test fixtures (model files, ...), shared across test packages."""
