"""Defences of the four papers, each a small module composed of the shared parts (DESIGN 8)."""

from spikeshield.defenses import hosnn, purification

__all__ = ["hosnn", "purification"]
