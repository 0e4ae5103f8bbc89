"""Real weights against the cde-small-v2 model card (marker ``network``, deselected by default).

Run it where the Hugging Face Hub is reachable::

    pytest -m network tests/core/test_verify_network.py -s

About 40-50 minutes on 2 CPU cores, about a minute on a GPU (``CDE_RAG_DEVICE=cuda``). When the
Hub cannot be reached the test is skipped with the reason. On a mismatch the failure message
holds the table under all four combinations of ``output_residual`` and
``pool_ignore_instruction_tokens`` (one extra stage-2 pass, the context is reused), which
settles the defaults in one run.
"""

from __future__ import annotations

import os

import pytest

from cde_rag import CDEEncoder
from cde_rag.errors import DatasetDownloadError, ModelDownloadError
from cde_rag.verify import CDE_SMALL_V2_NQ, format_report, load_card_data, run_card_check


def _hub_unreachable() -> str | None:
    """Why the Hub cannot be reached, or None when it answers."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    try:
        HfApi().model_info(CDE_SMALL_V2_NQ.model_id, timeout=20)
    except HfHubHTTPError:
        return None  # the Hub answered: a download error is then a real failure
    except Exception as exc:  # any transport error: no Hub from here
        return f"{type(exc).__name__}: {exc}"
    return None


@pytest.mark.network
@pytest.mark.enable_socket
def test_cde_small_v2_reproduces_the_model_card(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    # tests/conftest.py sets HF_HUB_OFFLINE=1 for every other test; this one needs the Hub.
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    device = os.environ.get("CDE_RAG_DEVICE", "auto")
    try:
        data = load_card_data()
        encoder = CDEEncoder.from_pretrained(CDE_SMALL_V2_NQ.model_id, device=device)
    except (DatasetDownloadError, ModelDownloadError):
        reason = _hub_unreachable()
        if reason is None:
            raise
        pytest.skip(f"the Hugging Face Hub is not reachable from here ({reason})")
    report = run_card_check(encoder, data, show_progress_bar=True)
    if not report.passed:
        sweep = run_card_check(
            encoder, data, all_switches=True, context=report.context, show_progress_bar=True
        )
        pytest.fail(
            f"{format_report(report)}\n\nall four switch combinations (same context):\n"
            f"{format_report(sweep)}",
            pytrace=False,
        )
