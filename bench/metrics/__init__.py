"""Metrics, one file per family, registered in ``bench.registry.METRICS``.

Each import below registers metrics; add a metric by writing one file and one line here.
"""
from bench.metrics import (  # noqa: F401  (one module per component)
    chrf,
    cider,
    coco_rouge,
    learned,
    meteor,
    mteval,
    multibleu,
    rouge_score_metric,
    sacrebleu_bleu,
    ter,
    webnlg_dart,
)
