"""Byte-level layout of a .pasidrec file: magic, CRC-checked frames, and a fixed tail pointing at the footer.

    MAGIC (8 bytes) | frame* | TAIL (16 bytes: footer offset as u64 little-endian, then b"PASIDEND")
    frame = tag (4 ASCII bytes) | payload length (u32 LE) | CRC-32 of payload (u32 LE) | payload (msgpack)

The tail is written last, so its absence tells the reader the capture was cut short; frames then get walked
from the start and every complete, CRC-valid chunk is kept.
"""

from __future__ import annotations

import struct
import zlib

MAGIC = b"\x89PASID\r\n"
TAIL_MAGIC = b"PASIDEND"
FRAME = struct.Struct("<4sII")
TAIL = struct.Struct("<Q8s")
TAG_HEADER, TAG_CHUNK, TAG_FOOTER = b"HEAD", b"CHNK", b"FOOT"
MAX_FRAME = 1 << 30


def frame(tag: bytes, payload: bytes) -> bytes:
    return FRAME.pack(tag, len(payload), zlib.crc32(payload)) + payload


def tail(footer_offset: int) -> bytes:
    return TAIL.pack(footer_offset, TAIL_MAGIC)
