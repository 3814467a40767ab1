"""Host-side numpy metrics: MCC, DCI, MIG, SAP, retrieval (R@K, medR, rSum), split quality."""

from jaxmr.metrics.dci import dci_scores
from jaxmr.metrics.mcc import correlation_matrix, mcc_report, mean_corr_coef, weak_mcc
from jaxmr.metrics.mig import mig_scores, mutual_info_gap
from jaxmr.metrics.retrieval import (
    im2recipe_protocol,
    mean_rank,
    median_rank,
    recall_at_k,
    retrieval_metrics_from_similarity,
    retrieval_metrics_multi_caption,
    scan_rank_summary,
)
from jaxmr.metrics.sap import sap_score, sap_scores
from jaxmr.metrics.split import split_quality

__all__ = [
    "correlation_matrix",
    "dci_scores",
    "im2recipe_protocol",
    "mcc_report",
    "mean_corr_coef",
    "mean_rank",
    "median_rank",
    "mig_scores",
    "mutual_info_gap",
    "recall_at_k",
    "retrieval_metrics_from_similarity",
    "retrieval_metrics_multi_caption",
    "sap_score",
    "sap_scores",
    "scan_rank_summary",
    "split_quality",
    "weak_mcc",
]
