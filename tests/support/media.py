"""Small but real media files for tests: valid PNG/JPEG/MP4 headers, chosen sizes."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path


def png_bytes(width: int = 4, height: int = 3) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def jpeg_bytes(pad_to: int = 0) -> bytes:
    # SOI, a JFIF APP0 segment, EOI; padded inside a COM segment when a size is asked for.
    body = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    if pad_to > len(body) + 2:
        remaining = pad_to - len(body) - 2
        while remaining > 4:
            size = min(remaining - 4, 65533)
            body += b"\xff\xfe" + struct.pack(">H", size + 2) + b"\x00" * size
            remaining -= size + 4
    return body + b"\xff\xd9"


def mp4_bytes(size: int = 2048) -> bytes:
    ftyp = struct.pack(">I", 24) + b"ftypisom" + b"\x00\x00\x02\x00" + b"isomiso2"
    mdat = struct.pack(">I", max(8, size - len(ftyp))) + b"mdat"
    return (ftyp + mdat).ljust(size, b"\x00")


def write(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path
