"""The shared transport cases, run on the webhook adapter (the smallest real HTTP adapter)."""

from __future__ import annotations

import pytest
import responses

from adapters.webhook import WebhookAdapter
from tests.adapters.conftest import message
from tests.adapters.harness import TRANSPORT_CASES


@pytest.mark.parametrize(("case", "raise_", "expected"), TRANSPORT_CASES, ids=[c[0] for c in TRANSPORT_CASES])
@responses.activate
def test_webhook_maps_transport_failures_to_typed_errors(make_adapter, job, case, raise_, expected):
    responses.post("https://hooks.example.go.id/siar", body=raise_())
    adapter = make_adapter(WebhookAdapter, url="https://hooks.example.go.id/siar", secret="s3cr3t-value")
    with pytest.raises(expected) as info:
        adapter.publish(message(), job)
    assert "s3cr3t-value" not in str(info.value)
