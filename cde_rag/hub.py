"""Turn a hub id or a local folder into a local checkpoint folder; nothing else.

Only the files cde-rag reads are downloaded (config, safetensors weights, tokenizer files,
``random_strings.txt``): never ``*.py`` remote code, never pickled ``*.bin`` weights.
``HF_HUB_OFFLINE=1`` and ``revision`` are honoured by ``huggingface_hub`` itself.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import snapshot_download
from huggingface_hub.errors import (
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from cde_rag.errors import CheckpointNotFoundError, ModelDownloadError

logger = logging.getLogger(__name__)

CHECKPOINT_FILES: tuple[str, ...] = ("config.json", "model.safetensors")
TOKENIZER_FILES: tuple[str, ...] = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)
OPTIONAL_FILES: tuple[str, ...] = ("random_strings.txt",)
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ResolvedCheckpoint:
    """A checkpoint available on local disk.

    Attributes:
        folder: Local folder holding ``config.json`` and ``model.safetensors``.
        model_id: The name the user asked for (hub id or the folder's absolute path).
        revision: The resolved commit hash for hub downloads, else None.
    """

    folder: Path
    model_id: str
    revision: str | None


def _offline_fix(name: str) -> str:
    return (
        f"To work offline, download it once where the Hub is reachable (for example "
        f"`hf download {name} --local-dir ./{name.split('/')[-1]}`), copy that folder here and "
        f"pass its path: CDEEncoder.from_pretrained('./{name.split('/')[-1]}')."
    )


def download_files(
    repo_id: str,
    patterns: tuple[str, ...],
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    what: str = "checkpoint",
) -> Path:
    """Download the files matching ``patterns`` from a hub repo and return the snapshot folder.

    Args:
        repo_id: Hub repository id, e.g. ``"jxm/cde-small-v2"``.
        patterns: File names to fetch.
        revision: Branch, tag or commit to pin.
        cache_dir: Hugging Face cache folder override.
        what: What is being fetched, for error messages.

    Returns:
        The local snapshot folder.

    Raises:
        ModelDownloadError: Offline, unreachable hub, unknown repo or revision.
    """
    try:
        path = snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=list(patterns),
            cache_dir=None if cache_dir is None else Path(cache_dir),
        )
    except RevisionNotFoundError as exc:
        msg = f"revision {revision!r} of {repo_id!r} does not exist on the Hugging Face Hub."
        raise ModelDownloadError(msg) from exc
    except RepositoryNotFoundError as exc:
        msg = (
            f"{repo_id!r} is neither a local folder nor a Hugging Face Hub repository. "
            "Check the name, or pass the path of a local checkpoint folder."
        )
        raise ModelDownloadError(msg) from exc
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
        why = "HF_HUB_OFFLINE is set" if offline else "the Hugging Face Hub is not reachable"
        msg = f"could not get the {what} {repo_id!r}: {why} ({exc}). {_offline_fix(repo_id)}"
        raise ModelDownloadError(msg) from exc
    return Path(path)


def resolve_checkpoint(
    name_or_path: str | os.PathLike[str],
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> ResolvedCheckpoint:
    """Find a checkpoint locally, or download it from the hub.

    Args:
        name_or_path: A local folder, or a hub id such as ``"jxm/cde-small-v2"``.
        revision: Hub revision to pin (ignored for local folders).
        cache_dir: Hugging Face cache folder override.

    Returns:
        The resolved checkpoint.

    Raises:
        CheckpointNotFoundError: A local folder, or a required file in it, does not exist.
        ModelDownloadError: The hub download failed (with how to use a local folder).
    """
    name = os.fspath(name_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        folder, model_id, resolved_revision = path, str(path.resolve()), None
    elif path.exists() or not _REPO_ID.match(name):
        msg = (
            f"checkpoint folder {name!r} does not exist (nor is it a hub id like "
            "'jxm/cde-small-v2'). Pass a folder holding config.json and model.safetensors."
        )
        raise CheckpointNotFoundError(msg)
    else:
        folder = download_files(
            name,
            CHECKPOINT_FILES + TOKENIZER_FILES + OPTIONAL_FILES,
            revision=revision,
            cache_dir=cache_dir,
        )
        model_id, resolved_revision = name, folder.name
    for filename in CHECKPOINT_FILES:
        if not (folder / filename).is_file():
            hint = (
                " Only safetensors weights are loaded (no pickle): convert pytorch_model.bin "
                "to model.safetensors."
                if filename == "model.safetensors"
                else ""
            )
            msg = f"{folder} has no {filename}; a CDE checkpoint needs {CHECKPOINT_FILES}.{hint}"
            raise CheckpointNotFoundError(msg)
    logger.debug("checkpoint %s resolved to %s", model_id, folder)
    return ResolvedCheckpoint(folder=folder, model_id=model_id, revision=resolved_revision)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, reusing the Hugging Face cache's content address when possible.

    Hub downloads of LFS files live in ``blobs/<sha256>``, so their name is their hash.
    """
    real = Path(os.path.realpath(path))
    if real.parent.name == "blobs" and _SHA256_HEX.match(real.name):
        return real.name
    digest = hashlib.sha256()
    with real.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 23), b""):
            digest.update(chunk)
    return digest.hexdigest()
