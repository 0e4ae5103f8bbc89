"""Read the columns of a parquet dataset from the Hugging Face Hub or a local copy.

Used by :mod:`cde_rag.verify`. Hub datasets are fetched with ``huggingface_hub`` into the
Hugging Face cache (a second run reads the cache, also with ``HF_HUB_OFFLINE=1``) and read with
``pyarrow`` (extra ``verify``). Only the parquet files of the wanted split are downloaded.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from cde_rag.errors import DatasetDownloadError, OptionalDependencyError, VerificationDataError

logger = logging.getLogger(__name__)

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def _parquet_module() -> ModuleType:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        msg = "Reading the reference dataset (parquet files) needs pyarrow."
        raise OptionalDependencyError(msg, extra="verify") from exc
    module: ModuleType = pq
    return module


def _offline_fix(repo_id: str) -> str:
    local = "./" + repo_id.split("/")[-1]
    return (
        f"Download it once where the Hub is reachable (`hf download {repo_id} --repo-type "
        f"dataset --local-dir {local}`), copy that folder here and pass its path "
        f"(`cde-rag verify --dataset {local}`, or load_card_data(dataset='{local}'))."
    )


def download_dataset(
    repo_id: str,
    split: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Fetch the parquet files of one split of a Hub dataset; return the snapshot folder.

    Raises:
        DatasetDownloadError: Offline, Hub unreachable, unknown dataset or revision.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        path = snapshot_download(
            repo_id,
            repo_type="dataset",
            revision=revision,
            allow_patterns=[f"*{split}-*.parquet", f"*{split}/*.parquet"],
            cache_dir=None if cache_dir is None else Path(cache_dir),
        )
    except RevisionNotFoundError as exc:
        msg = f"revision {revision!r} of the dataset {repo_id!r} does not exist on the Hub."
        raise DatasetDownloadError(msg) from exc
    except RepositoryNotFoundError as exc:
        msg = (
            f"{repo_id!r} is neither a local file or folder nor a dataset on the Hugging Face "
            "Hub. Check the name, or pass the path of a local copy."
        )
        raise DatasetDownloadError(msg) from exc
    except (HfHubHTTPError, OSError) as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
        why = "HF_HUB_OFFLINE is set" if offline else "the Hugging Face Hub is not reachable"
        msg = f"could not get the dataset {repo_id!r}: {why} ({exc}). {_offline_fix(repo_id)}"
        raise DatasetDownloadError(msg) from exc
    return Path(path)


def split_files(source: Path, split: str) -> list[Path]:
    """The parquet files of ``split`` under ``source`` (a file, or a dataset folder), in order.

    Hub layouts ``<config>/<split>-00000-of-00001.parquet`` and ``<config>/<split>/0000.parquet``
    are recognised; a folder without such names contributes all its ``*.parquet`` files.

    Raises:
        VerificationDataError: No parquet file, or files of several configs.
    """
    if source.is_file():
        return [source]
    every = sorted(p for p in source.rglob("*.parquet") if ".cache" not in p.parts)
    named = [p for p in every if p.name.startswith(f"{split}-") or p.parent.name == split]
    files = named or every
    if not files:
        msg = f"{source} holds no .parquet files; expected a dataset folder or a .parquet file."
        raise VerificationDataError(msg)
    configs = {p.parent.parent if p.parent.name == split else p.parent for p in files}
    if len(configs) > 1:
        found = ", ".join(sorted(str(c.relative_to(source)) or "." for c in configs))
        msg = (
            f"{source} holds {split} files of several configs ({found}); pass the folder of "
            "one config, or one .parquet file."
        )
        raise VerificationDataError(msg)
    return files


def read_columns(files: Sequence[Path], columns: Sequence[str]) -> dict[str, list[str]]:
    """Read ``columns`` from parquet ``files`` (concatenated in order) as lists of strings.

    Raises:
        OptionalDependencyError: pyarrow is not installed (extra ``verify``).
        VerificationDataError: Unreadable file, a missing column or a non-string value.
    """
    pq = _parquet_module()
    out: dict[str, list[str]] = {name: [] for name in columns}
    for path in files:
        try:
            schema_names = list(pq.read_schema(path).names)
            missing = [c for c in columns if c not in schema_names]
            if missing:
                msg = (
                    f"{path} has no column {', '.join(map(repr, missing))}; it has "
                    f"{', '.join(map(repr, schema_names))}. Pass the dataset the check expects."
                )
                raise VerificationDataError(msg)
            table = pq.read_table(path, columns=list(columns))
        except (OSError, ValueError) as exc:
            if isinstance(exc, VerificationDataError):
                raise
            msg = f"{path} is not a readable parquet file ({exc}); delete it and download again."
            raise VerificationDataError(msg) from exc
        for name in columns:
            values = table.column(name).to_pylist()
            bad = next((i for i, v in enumerate(values) if not isinstance(v, str)), None)
            if bad is not None:
                msg = (
                    f"{path}: column {name!r} row {bad} is {type(values[bad]).__name__}; "
                    "expected text."
                )
                raise VerificationDataError(msg)
            out[name].extend(values)
    logger.debug("read %d rows from %d parquet files", len(out[columns[0]]), len(files))
    return out


def load_columns(
    dataset: str | os.PathLike[str],
    split: str,
    columns: Sequence[str],
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[dict[str, list[str]], str]:
    """Read ``columns`` of ``split`` from a Hub dataset id or a local file/folder.

    Returns:
        The columns, and a description of the source (``repo@commit`` or the path).

    Raises:
        DatasetDownloadError: A Hub dataset could not be fetched.
        VerificationDataError: Missing path, unreadable files, missing columns.
        OptionalDependencyError: pyarrow is not installed.
    """
    _parquet_module()  # fail before any download when the extra is missing
    name = os.fspath(dataset)
    path = Path(name).expanduser()
    if path.exists():
        files, where = split_files(path, split), str(path.resolve())
    elif _REPO_ID.match(name):
        folder = download_dataset(name, split, revision=revision, cache_dir=cache_dir)
        files, where = split_files(folder, split), f"{name}@{folder.name}"
    else:
        msg = (
            f"dataset {name!r} is neither a local file or folder nor a Hub dataset id like "
            "'sentence-transformers/natural-questions'."
        )
        raise VerificationDataError(msg)
    return read_columns(files, columns), where
