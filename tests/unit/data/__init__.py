"""A working configuration for the settings, post and check tests, built in a temporary folder.

Two real adapters are used (`outbox`, `webhook`); `TinyAdapter` stands for a platform with a
text limit so that limit errors can be shown without depending on adapters still being written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import requests

from adapters.base import BaseAdapter, ConfigError, Limits
from tests.support import media as media_files

HOOK_SECRET = "hook-secret-for-tests-7f3a91"

SETTINGS = """\
[daemon]
timezone = "Asia/Jakarta"
media_url = "https://cdn.example.go.id/siar/"

[accounts.latihan]
platform = "outbox"

[accounts.hook]
platform = "webhook"
url = "https://hooks.example.go.id/siar"
secret = "${HOOK_SECRET}"
"""


def make_config(root: Path, settings: str = SETTINGS, env: str = f"HOOK_SECRET={HOOK_SECRET}\n") -> Path:
    """`root/config` with siar.toml, a private .env, an empty posts folder and two media files."""
    config = root / "config"
    (config / "posts").mkdir(parents=True)
    (config / "siar.toml").write_text(settings)
    env_file = config / ".env"
    env_file.write_text(env)
    env_file.chmod(0o600)
    media_files.write(config / "media", "photo.png", media_files.png_bytes())
    media_files.write(config / "media" / "video", "clip.mp4", media_files.mp4_bytes())
    return config


class TinyAdapter(BaseAdapter):
    """A platform that takes 20 characters and one image; `style` other than plain is refused."""

    platform: ClassVar[str] = "tiny"
    limits: ClassVar[Limits] = Limits(text_max=20, media_max=1, media_kinds=frozenset({"image"}))
    optional: ClassVar[tuple[str, ...]] = ("style",)

    def __init__(self, account: Any, http: requests.Session) -> None:
        super().__init__(account, http)
        if account.get("style", "plain") != "plain":
            raise ConfigError("style must be 'plain'")
