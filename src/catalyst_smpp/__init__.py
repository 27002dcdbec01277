"""Catalyst SMPP: a carrier-grade SMPP gateway."""

__version__ = "0.1.0"
