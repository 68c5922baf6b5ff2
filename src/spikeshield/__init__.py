"""spikeshield: train adversarially robust spiking neural networks and evaluate their robustness honestly.

>>> import spikeshield as ss
>>> model = ss.models.create_model("lenet", dataset="fashion_mnist", neuron="lif", encoder="direct", T=5)
>>> x_adv = ss.attacks.PGD(model, eps=8/255, alpha=2/255, steps=7)(x, y)     # doctest: +SKIP
"""

from spikeshield import attacks, checkpoint, data, defenses, encoding, evaluation, models, neurons, report, training

__version__ = "0.1.0"

__all__ = ["attacks", "checkpoint", "data", "defenses", "encoding", "evaluation", "models", "neurons", "report",
           "training"]
