"""Burrow control."""
