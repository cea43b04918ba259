"""Burrow certs."""
