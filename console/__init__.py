"""Burrow console."""
