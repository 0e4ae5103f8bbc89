"""Measure retrieval quality on your own data: context against no context, fp32 against bf16.

Example:
    >>> from cde_rag import CDEEncoder
    >>> from cde_rag_qdrant.evaluation import evaluate
    >>> encoder = CDEEncoder.from_pretrained("jxm/cde-small-v2")  # doctest: +SKIP
    >>> report = evaluate("./scifact", encoder, output_dir="./eval")  # doctest: +SKIP
    >>> print(report.table())  # doctest: +SKIP
"""

from __future__ import annotations

from cde_rag_qdrant.evaluation.beir import RetrievalData, load_beir
from cde_rag_qdrant.evaluation.conditions import (
    DEFAULT_CONDITIONS,
    BaselineCondition,
    Condition,
    ContextCondition,
    parse_condition,
)
from cde_rag_qdrant.evaluation.metrics import METRICS, evaluate_run, read_trec_run, write_trec_run
from cde_rag_qdrant.evaluation.report import ConditionResult, EvaluationReport
from cde_rag_qdrant.evaluation.runner import evaluate, evaluate_collection
from cde_rag_qdrant.evaluation.significance import paired_randomization_test

__all__ = [
    "DEFAULT_CONDITIONS",
    "METRICS",
    "BaselineCondition",
    "Condition",
    "ConditionResult",
    "ContextCondition",
    "EvaluationReport",
    "RetrievalData",
    "evaluate",
    "evaluate_collection",
    "evaluate_run",
    "load_beir",
    "paired_randomization_test",
    "parse_condition",
    "read_trec_run",
    "write_trec_run",
]
