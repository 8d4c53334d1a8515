"""The outbox adapter: one JSON file per delivery key, written atomically, found again by lookup."""

from __future__ import annotations

import json

import pytest

from adapters.base import AuthExpired, MemoryJob
from adapters.outbox import OutboxAdapter
from tests.adapters.conftest import message


@pytest.fixture
def adapter(make_adapter):
    return make_adapter(OutboxAdapter, name="latihan")


def test_publish_writes_the_message_as_json_named_by_the_key(adapter, job, make_media, tmp_path):
    receipt = adapter.publish(message(text="Halo", media=(make_media("photo.png", alt="Peta"),)), job)
    target = tmp_path / "state" / "outbox" / "latihan" / f"{job.key}.json"
    assert receipt.platform_id == job.key
    assert receipt.url == target.resolve().as_uri()
    document = json.loads(target.read_text())
    assert document["text"] == "Halo"
    assert document["media"] == [{"file": "photo.png", "alt": "Peta", "url": "https://cdn.example.go.id/siar/photo.png"}]
    assert not list(target.parent.glob(".outbox-*"))  # no temporary file left behind


def test_publishing_the_same_key_twice_never_makes_a_second_file(adapter, job):
    first = adapter.publish(message(text="Sekali"), job)
    second = adapter.publish(message(text="Sekali"), MemoryJob(key=job.key, attempt=2))
    assert first == second
    assert len(list(adapter.folder.glob("*.json"))) == 1


def test_lookup_finds_a_written_post_and_nothing_for_an_unsent_one(adapter, job):
    assert adapter.lookup(message(), job) is None
    receipt = adapter.publish(message(), job)
    assert adapter.lookup(message(), job) == receipt


def test_whoami_fails_when_the_folder_cannot_be_made(make_adapter, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the outbox folder should be")
    adapter = make_adapter(OutboxAdapter, folder=str(blocker / "latihan"))
    with pytest.raises(AuthExpired, match="not usable"):
        adapter.whoami()


def test_whoami_names_the_folder(adapter):
    assert adapter.whoami() == f"outbox folder {adapter.folder}"
