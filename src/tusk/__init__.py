"""Tusk: version control and pipelines for data."""

__version__ = "0.1.0"
