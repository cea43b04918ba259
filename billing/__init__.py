"""Burrow billing."""
