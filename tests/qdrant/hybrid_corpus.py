"""A corpus where queries name exact identifiers (error codes, function names).

Written for the hybrid tests: every document describes one identifier in otherwise similar,
generic wording, so only the identifier tells them apart. Lexical search finds each one;
dense search with the tiny random-weight test model cannot.
"""

from __future__ import annotations

_TOPICS = [
    ("ERR_DISK_7731", "the storage volume ran out of free blocks while writing a file"),
    ("ERR_CONN_4012", "the client gave up waiting for the upstream socket to answer"),
    ("ERR_AUTH_0193", "the access token expired before the request was signed"),
    ("ERR_QUOTA_5520", "the account used more requests than its plan allows per hour"),
    ("ERR_SCHEMA_2284", "a field in the record had a type the table does not accept"),
    ("ERR_LOCK_9046", "another process held the lock on the store for too long"),
    ("parse_config_file", "reads the settings file and returns a dictionary of options"),
    ("rotate_signing_keys", "replaces the keys used to sign tokens and keeps the old ones"),
    ("flush_write_buffer", "pushes pending writes to disk before the process exits"),
    ("compact_segments", "merges small index segments into larger ones in the background"),
    ("retry_with_backoff", "calls a function again after waiting longer each time it fails"),
    ("normalize_unicode_path", "turns a file path into one canonical form before comparing"),
]

DOCS: list[str] = [
    f"{ident}: {what}. This page explains when it happens and what the operator should do "
    "next, with the usual checks of the logs and the configuration."
    for ident, what in _TOPICS
]
"""One document per identifier."""

QUERIES: list[tuple[str, int]] = [
    (f"what should I do about {ident}?", i) for i, (ident, _) in enumerate(_TOPICS)
]
"""(query naming one identifier, index of its document)."""
