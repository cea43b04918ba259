"""Burrow edge."""
