"""The native CDE network: pure torch, no file or network I/O except weights loading."""

from __future__ import annotations

from cde_rag.model.cde import CDEModel, FirstStage, SecondStage
from cde_rag.model.weights import load_model

__all__ = ["CDEModel", "FirstStage", "SecondStage", "load_model"]
