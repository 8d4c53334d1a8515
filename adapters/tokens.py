"""Rotated credentials kept on disk per account (mode 0600), never in the database or a log."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from adapters.base import register_secret


class TokenStore:
    """A small JSON file in the account's state folder, replaced atomically on every save."""

    def __init__(self, folder: Path | None, name: str = "token.json") -> None:
        self.path = folder / name if folder is not None else None
        self._memory: dict[str, Any] = {}

    def load(self) -> dict[str, Any]:
        if self.path is None or not self.path.exists():
            return dict(self._memory)
        data = json.loads(self.path.read_text())
        for value in data.values():
            if isinstance(value, str):
                register_secret(value)
        return data

    def save(self, data: dict[str, Any]) -> None:
        for value in data.values():
            if isinstance(value, str):
                register_secret(value)
        if self.path is None:
            self._memory = dict(data)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".token-")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(data, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
