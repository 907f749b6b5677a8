"""Exporters: a checkpoint's network in another runtime's format (one module per format)."""
