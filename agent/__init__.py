"""Burrow agent."""
