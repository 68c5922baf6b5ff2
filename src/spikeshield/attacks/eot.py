"""EOT: Expectation over Transformation as a wrapper, ``EOT(PGD(model, eps), 10)``.

Paper: Athalye, Engstrom, Ilyas, Kwok, "Synthesizing Robust Adversarial Examples", ICML 2018; Athalye, Carlini,
Wagner, "Obfuscated Gradients Give a False Sense of Security", ICML 2018 (section 4.2).

The one implementation of EOT is the base class's batched ``eot`` argument
(:meth:`spikeshield.attacks.base.Attack.objective_and_gradient`): the batch is repeated ``eot`` times in one
forward/backward pass and the per-draw input gradients are averaged. :func:`EOT` is sugar for it: it returns a copy
of the attack with ``eot`` set, so ``EOT(PGD(model, eps, steps=7), 10)`` is the same attack as
``PGD(model, eps, steps=7, eot=10)``.
"""

from __future__ import annotations

import copy

from spikeshield.attacks.base import Attack, _check_positive_int


def EOT(attack: Attack, draws: int) -> Attack:  # noqa: N802  (a public attack name, DESIGN.md)
    """A copy of ``attack`` whose gradients average ``draws`` EOT draws (``eot=draws``); ``attack`` is unchanged.

    Args:
        attack: an :class:`~spikeshield.attacks.base.Attack` instance (PGD, APGD, ...). For a
            :class:`~spikeshield.attacks.transfer.Transfer` attack the draws go to the attack run on the source.
        draws: EOT draws per gradient, an integer >= 1 (it replaces the attack's ``eot``; ``1`` turns EOT off).

    Returns:
        A shallow copy of ``attack`` (same model, same settings, ``forward_passes`` reset to 0) with ``eot = draws``.

    >>> atk = EOT(PGD(model, eps=8/255, steps=7), 10)   # == PGD(model, eps=8/255, steps=7, eot=10)  # doctest: +SKIP
    """
    if not isinstance(attack, Attack):
        raise TypeError(f"EOT wraps an Attack instance (e.g. EOT(PGD(model, eps), 10)); got {type(attack).__name__}")
    draws = _check_positive_int(draws, "draws (number of EOT draws)")
    wrapped = copy.copy(attack)
    wrapped.eot = wrapped._eot_given = draws  # given: a later probe of an undeclared model keeps it
    wrapped.forward_passes = 0
    inner = getattr(wrapped, "source_attack", None)
    if isinstance(inner, Attack):  # Transfer: the gradients are taken by the attack on the source model
        wrapped.source_attack = EOT(inner, draws)
    return wrapped
