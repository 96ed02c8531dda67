"""Worked examples of bringing your own environment to LucidRL's scripts (see README.md)."""
