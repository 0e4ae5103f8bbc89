"""``CorpusContext.save`` creates missing folders and fails with a typed error otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cde_rag import CorpusContext
from cde_rag.errors import CDERagError, ContextSaveError


def test_save_creates_missing_parent_folders(v2_context: CorpusContext, tmp_path: Path) -> None:
    target = tmp_path / "not" / "yet" / "there" / "ctx.safetensors"
    assert v2_context.save(target) == target
    again = CorpusContext.load(target)
    assert torch.equal(again.embeddings, v2_context.embeddings)
    assert [p.name for p in target.parent.iterdir()] == ["ctx.safetensors"]  # no temp file


def test_save_to_a_folder_is_refused(v2_context: CorpusContext, tmp_path: Path) -> None:
    with pytest.raises(ContextSaveError, match=r"is a folder; pass a file path") as caught:
        v2_context.save(tmp_path)
    assert isinstance(caught.value, OSError) and isinstance(caught.value, CDERagError)


def test_save_below_a_file_is_refused(v2_context: CorpusContext, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(ContextSaveError, match=r"could not save the context to .*writable"):
        v2_context.save(blocker / "ctx.safetensors")
    assert blocker.read_text() == "a file where a folder should be"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]
