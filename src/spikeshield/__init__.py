"""spikeshield: train adversarially robust spiking neural networks and evaluate their robustness honestly."""

from spikeshield import encoding, models, neurons

__version__ = "0.1.0"

__all__ = ["encoding", "models", "neurons"]
