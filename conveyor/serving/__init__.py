"""Serving models: for now the one loader the server will use (the server itself comes later)."""

from conveyor.model.loading import load_model

__all__ = ["load_model"]
