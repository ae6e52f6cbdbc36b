"""Widgets of the jam screen, one module per feature (transport, meters, onsets, groove, log)."""
