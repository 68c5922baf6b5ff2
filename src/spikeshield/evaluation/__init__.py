"""Evaluation: robust accuracy with per-sample worst case and MRA, and the result record.

>>> result = evaluate(model, x, y, attacks="fgsm,pgd7", eps=8/255)   # doctest: +SKIP
"""

from spikeshield.evaluation.result import SCHEMA, EvalResult
from spikeshield.evaluation.robustness import DEFAULT_EOT, evaluate

__all__ = ["DEFAULT_EOT", "SCHEMA", "EvalResult", "evaluate"]
