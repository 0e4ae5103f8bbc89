"""Every exception the core raises.

Each class also inherits the builtin it refines, so ``except ValueError`` keeps working, and
every message says what was found, what was expected and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "CDERagError",
    "CheckpointError",
    "CheckpointFormatError",
    "CheckpointNotFoundError",
    "ContextCorruptError",
    "ContextError",
    "ContextMismatchError",
    "ContextNotSetError",
    "ContextSaveError",
    "DatasetDownloadError",
    "InvalidInputError",
    "ModelDownloadError",
    "OptionalDependencyError",
    "TokenizerNotFoundError",
    "VerificationDataError",
]


class CDERagError(Exception):
    """Root of every error raised by cde-rag."""


class CheckpointError(CDERagError, OSError):
    """A checkpoint could not be used."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """A checkpoint folder or one of its required files does not exist."""


class CheckpointFormatError(CheckpointError, ValueError):
    """A checkpoint exists but its config, weights or shapes are wrong or corrupt."""


class ModelDownloadError(CheckpointError):
    """The Hugging Face Hub could not be reached (offline, no network, unknown repo)."""


class TokenizerNotFoundError(CheckpointError, FileNotFoundError):
    """No tokenizer files were found for a checkpoint."""


class ContextError(CDERagError, ValueError):
    """Base class for problems with a corpus context (dataset embeddings)."""


class ContextMismatchError(ContextError):
    """A context was made by another model, or has the wrong width."""


class ContextCorruptError(ContextError):
    """A stored context does not match its fingerprint, shape, dtype or has non-finite values."""


class ContextNotSetError(ContextError):
    """An adapter was asked to embed before a context was bound to it."""


class ContextSaveError(CDERagError, OSError):
    """A context could not be written (the path is a folder, or not writable)."""


class InvalidInputError(CDERagError, ValueError):
    """Texts or arguments given to the encoder are invalid."""


class DatasetDownloadError(CDERagError, OSError):
    """A dataset (``cde_rag.verify``'s reference data) could not be fetched from the Hub."""


class VerificationDataError(InvalidInputError):
    """Reference data for ``cde_rag.verify`` is unreadable, lacks a column or has too few rows."""


class OptionalDependencyError(CDERagError, ImportError):
    """An optional extra is needed but not installed.

    Attributes:
        extra: Name of the ``cde-rag`` extra that provides the missing package.
    """

    def __init__(self, message: str, *, extra: str) -> None:
        """Create the error.

        Args:
            message: What is missing.
            extra: The extra that installs it.
        """
        self.extra = extra
        super().__init__(f"{message} Install it with: pip install 'cde-rag[{extra}]'")
