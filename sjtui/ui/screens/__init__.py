"""Screens pushed over the jam screen: help and the device, port and clock pickers."""
