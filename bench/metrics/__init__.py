"""Metrics, one file per family, registered in ``bench.registry.METRICS``.

Each import below registers metrics; add a metric by writing one file and one line here.
"""
from bench.metrics import cider, coco_rouge, meteor, mteval  # noqa: F401  (engineer K1)
from bench.metrics import chrf, learned, multibleu, rouge_score_metric, ter, webnlg_dart  # noqa: F401  (engineer K2)
