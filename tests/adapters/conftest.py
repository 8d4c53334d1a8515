"""Fixtures every adapter test shares: instant waits, jobs with checkpoints, real media files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from adapters.base import BaseAdapter, Media, MemoryJob, Message
from tests.support import media as media_files


@pytest.fixture
def make_adapter(tmp_path: Path) -> Callable[..., BaseAdapter]:
    """Build an adapter the way the dispatcher does, with waits made instant."""

    def build(cls: type[BaseAdapter], **account: Any) -> BaseAdapter:
        account.setdefault("name", f"test-{cls.platform}")
        account.setdefault("state_dir", str(tmp_path / "state" / "accounts" / account["name"]))
        account.setdefault("timeout", 5)
        adapter = cls(account, requests.Session())
        adapter.sleep = lambda _seconds: None
        return adapter

    return build


@pytest.fixture
def job() -> MemoryJob:
    return MemoryJob(key="k-0123456789abcdef0123456789abcdef", attempt=1)


@pytest.fixture
def media_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "media"
    media_files.write(folder, "photo.png", media_files.png_bytes())
    media_files.write(folder, "photo.jpg", media_files.jpeg_bytes())
    media_files.write(folder, "second.jpg", media_files.jpeg_bytes())
    media_files.write(folder, "clip.mp4", media_files.mp4_bytes())
    return folder


@pytest.fixture
def make_media(media_dir: Path) -> Callable[..., Media]:
    def build(file: str, alt: str | None = "alt text", url_base: str | None = "https://cdn.example.go.id/siar/") -> Media:
        return Media(file=file, path=media_dir / file, alt=alt, url=(url_base + file) if url_base else None)

    return build


def message(text: str = "Selamat Hari Guru Nasional!", **kwargs: Any) -> Message:
    return Message(post_id=kwargs.pop("post_id", "hari-guru-2026"), text=text, **kwargs)
