"""Burrow bench."""
