"""The embedded default: each post becomes a JSON file under state/outbox/<account>/.

Needs no network and no credentials. The file is named by the delivery's idempotency key and
written atomically, so `lookup` settles a crash exactly and a resend can never make a second file.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

from adapters.base import AuthExpired, BaseAdapter, ConfigError, Job, Limits, Message, Receipt


class OutboxAdapter(BaseAdapter):
    platform: ClassVar[str] = "outbox"
    limits: ClassVar[Limits] = Limits(media_max=100, media_kinds=frozenset({"image", "video", "other"}))
    optional: ClassVar[tuple[str, ...]] = ("folder",)
    paths: ClassVar[tuple[str, ...]] = ("folder",)

    def __init__(self, account: Any, http: Any) -> None:
        super().__init__(account, http)
        folder = account.get("folder")
        if folder:
            self.folder = Path(folder)
        elif self.state_dir is not None:
            # state/accounts/<name> → state/outbox/<name>
            self.folder = self.state_dir.parent.parent / "outbox" / self.name
        else:
            raise ConfigError("outbox needs a state folder or a `folder` setting")

    def _file(self, job: Job) -> Path:
        return self.folder / f"{job.key}.json"

    def publish(self, message: Message, job: Job) -> Receipt:
        target = self._file(job)
        if target.exists():  # a retry after the write landed: the same file, never a second one
            return self._receipt(target, job)
        self.folder.mkdir(parents=True, exist_ok=True)
        document = {
            "key": job.key,
            "account": self.name,
            "post_id": message.post_id,
            "text": message.text,
            "link": message.link,
            "title": message.title,
            "media": [{"file": m.file, "alt": m.alt, "url": m.url} for m in message.media],
            "written_at": datetime.now(timezone.utc).isoformat(),
        }
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".outbox-")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(document, handle, ensure_ascii=False, indent=2)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
            dir_fd = os.open(self.folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self._receipt(target, job)

    def lookup(self, message: Message, job: Job) -> Receipt | None:
        target = self._file(job)
        return self._receipt(target, job) if target.exists() else None

    def whoami(self) -> str:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AuthExpired(f"outbox folder {self.folder} is not usable: {exc.strerror}") from exc
        if not os.access(self.folder, os.W_OK):
            raise AuthExpired(f"outbox folder {self.folder} is not writable")
        return f"outbox folder {self.folder}"

    @staticmethod
    def _receipt(target: Path, job: Job) -> Receipt:
        return Receipt(platform_id=job.key, url=target.resolve().as_uri())
