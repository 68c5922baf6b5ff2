"""Evaluation: robust accuracy with per-sample worst case and MRA, eps sweeps, QTE, AGCS, layer-wise errors, records.

>>> result = evaluate(model, x, y, attacks="fgsm,pgd7", eps=8/255)   # doctest: +SKIP
>>> p_qte = qte_from_result(result, "pgd7")                          # doctest: +SKIP
>>> sweep = eps_sweep(model, x, y, eps_list=(0, 4/255, 8/255))       # doctest: +SKIP
>>> agcs(model, x, y).mean                                           # doctest: +SKIP
>>> errors = layer_errors(model, x, x_adv, trace="psc")              # doctest: +SKIP
>>> report = audit(model, x, y, eps=8/255); report.flags            # doctest: +SKIP
>>> transferability(snn_a, snn_b, x, y, attack="pgd7").transfer_rate # doctest: +SKIP
>>> certify(rsc_model, x, y, n0=100, n=1000).certified_accuracy(0.25) # doctest: +SKIP
"""

from spikeshield.evaluation.audit import AUDIT_SCHEMA, AuditReport, audit, flags_from_result
from spikeshield.evaluation.certification import CERTIFY_SCHEMA, CertifyResult, certify, smoothing_of
from spikeshield.evaluation.metrics import (
    AGCSResult,
    agcs,
    coding_cosine,
    layer_errors,
    perturbation_cosine,
    qte,
    qte_from_result,
)
from spikeshield.evaluation.result import SCHEMA, EvalResult
from spikeshield.evaluation.robustness import DEFAULT_EOT, evaluate
from spikeshield.evaluation.sweep import SWEEP_SCHEMA, SweepResult, eps_sweep
from spikeshield.evaluation.transferability import TransferResult, transferability

__all__ = ["AUDIT_SCHEMA", "CERTIFY_SCHEMA", "DEFAULT_EOT", "SCHEMA", "SWEEP_SCHEMA", "AGCSResult", "AuditReport",
           "CertifyResult", "EvalResult", "SweepResult", "TransferResult", "agcs", "audit", "certify", "coding_cosine",
           "eps_sweep", "evaluate", "flags_from_result", "layer_errors", "perturbation_cosine", "qte",
           "qte_from_result", "smoothing_of", "transferability"]
