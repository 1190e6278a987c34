"""Catch-the-Patch (CtP) self-supervised video representation learning in Keras 3."""

__version__ = "0.1.0"
