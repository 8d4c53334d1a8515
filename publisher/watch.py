"""Watching the posts folder with inotify, so an idle daemon need not walk it every `sync_every`.

Sync compares every post file's size and mtime with what it last read: cheap per file, but with
10,000 files that is a walk and 10,000 `stat`s (~85 ms) every ten seconds, most of an idle
daemon's CPU. A `FolderWatch` asks the kernel instead (inotify, through ctypes on libc: no new
dependency) and answers one question — "has anything sync could see changed since I was last
asked?" — plus, after a short quiet spell (debounce, so a `git pull` of 500 files is one or two
syncs, not 500), calls back so the change is synced at once rather than at the next tick.

It errs on the side of "changed": an event queue overflow, a read error, the folder itself moved,
removed or replaced, all count as changes, and a watch that cannot be trusted any more says so
(`active` false), so the daemon walks the folder as before. Where inotify cannot be used at all
(not Linux, a seccomp filter, the per-user watch or instance limit, a folder it may not read) it
does not start and says why (`reason`); the daemon then walks the folder every `sync_every`, as
it always did. What inotify never sees (a file changed on another NFS client, the target of a
symlinked post file outside the folder) is left to the daemon's occasional full walk.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import struct
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from publisher import logs

log = logs.get("siar.watch")

# <sys/inotify.h>
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_EXCL_UNLINK = 0x04000000
IN_MASK_ADD = 0x20000000
IN_ISDIR = 0x40000000

# Everything that can change what sync reads: a file written (IN_MODIFY for each write, and
# IN_CLOSE_WRITE for writers through mmap), created, removed, renamed in or out, its mode or
# mtime changed (IN_ATTRIB: `touch`, `chmod` making a file or folder unreadable), and the watched
# folder itself going away. Events about files unlinked but still open are of no interest.
DIR_EVENTS = (IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB | IN_CREATE | IN_DELETE | IN_MOVED_FROM
              | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_EXCL_UNLINK | IN_ONLYDIR)
# The folder holding the posts folder: only whether the posts folder's own name is replaced
# (`mv posts.new posts`, `ln -sfn release-2 posts`), which its own watch cannot see.
PARENT_EVENTS = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ONLYDIR
_GONE = IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_UNMOUNT

_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then the name
_BUFFER = 64 * 1024

# Failures that a later try may not meet (the folder appears, watches are freed); the others
# (no inotify in this kernel or libc, refused by a seccomp filter) stay until the process ends.
_RETRY_AT_ONCE = {errno.ENOENT, errno.ENOTDIR}


class WatchUnavailable(Exception):
    """inotify cannot watch the folder: `reason` for the log, `retry` whether trying again later
    may succeed (None: never; 0.0: at once, e.g. the folder does not exist yet; else later)."""

    def __init__(self, reason: str, retry: float | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry


class _Inotify:
    """The three libc calls. A class so tests can stand in for the kernel (a watch limit, EPERM)."""

    def __init__(self) -> None:
        if not sys.platform.startswith("linux"):
            raise WatchUnavailable(f"inotify is Linux-only (this is {sys.platform})", None)
        try:
            libc = ctypes.CDLL(None, use_errno=True)  # the C library already loaded (glibc or musl)
            self._init1 = libc.inotify_init1
            self._add = libc.inotify_add_watch
            self._rm = libc.inotify_rm_watch
        except (OSError, AttributeError) as exc:
            raise WatchUnavailable(f"the C library has no inotify ({exc})", None) from exc
        self._init1.argtypes = [ctypes.c_int]
        self._add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self._rm.argtypes = [ctypes.c_int, ctypes.c_int]

    def init(self) -> int:
        # IN_NONBLOCK and IN_CLOEXEC are O_NONBLOCK and O_CLOEXEC by definition: the fd is read
        # only after poll() says so, and is not inherited by anything the daemon starts.
        fd = self._init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise _os_error("inotify_init1")
        return int(fd)

    def add_watch(self, fd: int, path: str, mask: int) -> int:
        wd = self._add(fd, os.fsencode(path), mask)
        if wd < 0:
            raise _os_error(path)
        return int(wd)

    def rm_watch(self, fd: int, wd: int) -> None:
        self._rm(fd, wd)  # a watch the kernel already dropped (its folder went) fails harmlessly


def _os_error(what: str) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, os.strerror(code), what)


def _unavailable(exc: OSError, folder: Path, retry_later: float) -> WatchUnavailable:
    code = exc.errno
    if code in _RETRY_AT_ONCE:
        return WatchUnavailable(f"{folder} does not exist or is not a folder", 0.0)
    if code == errno.ENOSPC:
        return WatchUnavailable(
            f"the inotify watch limit is reached (fs.inotify.max_user_watches): {exc.filename}", retry_later)
    if code == errno.EMFILE:
        return WatchUnavailable("the inotify instance limit is reached (fs.inotify.max_user_instances)",
                                retry_later)
    if code in (errno.ENOSYS, errno.EPERM, errno.EINVAL):
        return WatchUnavailable(f"inotify is not allowed here: {exc.strerror}", None)
    return WatchUnavailable(f"cannot watch {exc.filename}: {exc.strerror}", retry_later)


class FolderWatch:
    """Watches `folder` and every folder below it that sync reads (not hidden ones, not symlinked
    ones, as `posts.post_entries`), for anything that could change what sync sees.

    `start()` → True when watching; else `reason` says why not. `take()` → whether anything
    changed since the last `take()` (always True once the watch cannot be trusted: `active`
    turns false). `on_change` is called from the watch's thread once events have stopped for
    `debounce` seconds (at the latest `max_delay` after the first); it must not block for long.
    """

    def __init__(self, folder: Path, on_change: Callable[[], None] | None = None, *,
                 debounce: float = 0.25, max_delay: float = 2.0, retry_later: float = 300.0) -> None:
        self.folder = Path(folder)
        self.on_change = on_change
        self.debounce = debounce
        self.max_delay = max(max_delay, debounce)
        self.retry_later = retry_later
        self.reason: str | None = "not started"
        self.retry: float | None = 0.0  # when not active: seconds until trying again may help
        self._lock = threading.Lock()
        self._changed = False
        self._broken = False
        self._started = False
        self._fd = -1
        self._wake_r = self._wake_w = -1
        self._wds: dict[int, str] = {}  # watch descriptor → folder path (relative, "" = the folder)
        self._root_wd = self._parent_wd = -1
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._api: _Inotify | None = None

    # --- the daemon's side ----------------------------------------------------------------------

    @property
    def active(self) -> bool:
        """Watching, and nothing happened that the watch could have missed something through."""
        return self._started and not self._broken

    @property
    def watches(self) -> int:
        return len(self._wds)

    def start(self) -> bool:
        try:
            self._api = _Inotify()
            if not self.folder.is_dir():
                raise WatchUnavailable(f"{self.folder} does not exist or is not a folder", 0.0)
            try:
                self._fd = self._api.init()
            except OSError as exc:
                raise _unavailable(exc, self.folder, self.retry_later) from exc
            try:
                self._scan()
                self._watch_parent()
            except OSError as exc:
                raise _unavailable(exc, self.folder, self.retry_later) from exc
        except WatchUnavailable as exc:
            self.reason, self.retry = exc.reason, exc.retry
            self._close_fds()
            return False
        self._wake_r, self._wake_w = os.pipe()  # close() writes a byte: the thread's poll returns
        self._started, self.reason, self.retry = True, None, None
        self._thread = threading.Thread(target=self._run, name="siar-watch", daemon=True)
        self._thread.start()
        return True

    def take(self) -> bool:
        """Has anything changed since the last call? True also when the watch cannot say."""
        with self._lock:
            changed, self._changed = self._changed, False
        return changed or not self.active

    @property
    def changed(self) -> bool:
        """As `take()`, without clearing."""
        return self._changed or not self.active

    def close(self) -> None:
        self._closing.set()
        if self._wake_w >= 0:
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5)
        self._close_fds()
        self._started = False

    def __enter__(self) -> FolderWatch:
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.close()

    # --- watches ----------------------------------------------------------------------------------

    def _scan(self) -> None:
        """Watch the folder and every folder below it that sync reads; drop watches on folders no
        longer there (moved out, or into a hidden folder). Adding a watch twice returns the same
        descriptor, so a rescan after a folder was created or moved only adds what is new."""
        assert self._api is not None
        seen: dict[int, str] = {}
        self._root_wd = self._api.add_watch(self._fd, str(self.folder), DIR_EVENTS)
        seen[self._root_wd] = ""
        pending = [(str(self.folder), "")]
        while pending:
            top, rel = pending.pop()
            try:
                with os.scandir(top) as listing:
                    folders = [(e.path, rel + e.name + "/") for e in listing
                               if not e.name.startswith(".") and _real_dir(e)]
            except FileNotFoundError:
                continue  # went while being scanned: its parent's event says so
            except OSError as exc:
                if top == str(self.folder):
                    raise
                # A folder sync cannot read either: sync refuses the pass and says why; what it
                # holds cannot be watched, so the watch cannot vouch for it.
                raise OSError(exc.errno, exc.strerror, top) from exc
            for path, below in folders:
                try:
                    wd = self._api.add_watch(self._fd, path, DIR_EVENTS | IN_DONT_FOLLOW)
                except OSError as exc:
                    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                        continue  # went (or became a symlink) since it was listed
                    raise
                seen[wd] = below
                pending.append((path, below))
        for wd in set(self._wds) - set(seen):
            self._api.rm_watch(self._fd, wd)
        self._wds = seen

    def _watch_parent(self) -> None:
        assert self._api is not None
        parent = self.folder.absolute().parent
        try:
            # IN_MASK_ADD: should the parent be one of the watched folders after all (a posts
            # folder that is a symlink into itself), its watch keeps every event it had.
            wd = self._api.add_watch(self._fd, str(parent), PARENT_EVENTS | IN_MASK_ADD)
        except OSError:
            # Only to notice the folder being replaced by another; the periodic full walk still does.
            wd = -1
        self._parent_wd = -1 if wd in self._wds else wd

    def _close_fds(self) -> None:
        for name in ("_fd", "_wake_r", "_wake_w"):
            fd = getattr(self, name)
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
                setattr(self, name, -1)

    # --- the watch's thread ---------------------------------------------------------------------

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        try:
            while not self._closing.is_set():
                ready = poller.poll()  # blocks until an event or close(): no CPU while idle
                if self._closing.is_set():
                    break
                if any(fd == self._fd and flags & (select.POLLERR | select.POLLNVAL) for fd, flags in ready):
                    raise OSError("the inotify descriptor reports an error")
                if not ready or not self._drain():
                    continue
                # Something changed: wait for a quiet spell (a `git pull`, an editor's several
                # writes) so one sync sees it all, but not longer than max_delay in a steady stream.
                first = time.monotonic()
                while not self._broken:
                    wait = min(self.debounce, first + self.max_delay - time.monotonic())
                    if wait <= 0 or not poller.poll(int(wait * 1000) + 1) or self._closing.is_set():
                        break
                    self._drain()
                if self._closing.is_set():
                    break
                self._notify()
                if self._broken:
                    break  # nothing more to read that could be trusted; the daemon makes a new watch
        except Exception as exc:  # never let the thread die silently: "changed", and stop trusting it
            self._fail(f"the watch failed: {type(exc).__name__}: {exc}", self.retry_later)
            log.error("sync.watch_failed", folder=str(self.folder), error=self.reason)
            self._notify()

    def _notify(self) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change()
        except Exception as exc:
            log.error("sync.watch_callback_failed", error=f"{type(exc).__name__}: {exc}")

    def _fail(self, reason: str, retry: float | None) -> None:
        with self._lock:
            self._changed = True
            self._broken = True
            self.reason, self.retry = reason, retry

    def _drain(self) -> bool:
        """Read every queued event; True if one of them could change what sync sees."""
        changed = rescan = False
        while True:
            try:
                data = os.read(self._fd, _BUFFER)
            except BlockingIOError:
                break
            except OSError as exc:
                self._fail(f"reading the watch failed: {exc.strerror}", self.retry_later)
                return True
            if not data:
                break
            offset = 0
            while offset + _EVENT.size <= len(data):
                wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
                name = data[offset + _EVENT.size: offset + _EVENT.size + length].rstrip(b"\0")
                offset += _EVENT.size + length
                relevant, again = self._event(wd, mask, os.fsdecode(name))
                changed = changed or relevant
                rescan = rescan or again
        if rescan and not self._broken:
            try:
                self._scan()
            except OSError as exc:
                # A new folder that cannot be watched (a limit, no permission): the watch can no
                # longer vouch for the whole tree; the daemon walks instead.
                failed = _unavailable(exc, self.folder, self.retry_later)
                self._fail(failed.reason, failed.retry)
                changed = True
        if changed:
            with self._lock:
                self._changed = True
        return changed

    def _event(self, wd: int, mask: int, name: str) -> tuple[bool, bool]:
        """(could this change what sync sees, must the folders be scanned again for watches)."""
        if mask & IN_Q_OVERFLOW:
            return True, True  # events were lost, folders created among them too
        if wd == self._parent_wd:
            if name == self.folder.name:
                self._fail(f"{self.folder} was replaced or removed", 0.0)
                return True, False
            return False, False
        if wd == self._root_wd and mask & _GONE:
            self._fail(f"{self.folder} was moved, removed or unmounted", 0.0)
            return True, False
        if mask & IN_IGNORED:
            self._wds.pop(wd, None)  # a folder below went; its parent's IN_DELETE/IN_MOVED_FROM said so
            return False, False
        if mask & (IN_DELETE_SELF | IN_MOVE_SELF):
            return False, False  # likewise reported by its parent
        if not name:
            return True, False  # about a watched folder itself: its mode or times changed
        if name.startswith("."):
            return False, False  # hidden: editors' swap files, .git; sync skips them
        if mask & IN_ISDIR:
            return True, bool(mask & (IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM))
        return name.endswith(".toml"), False  # sync reads nothing else


def _real_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False
