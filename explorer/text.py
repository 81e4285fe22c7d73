"""Untrusted text made safe to show or write: process names, device names, log lines, scenario text and titles
come from strangers (`comm` is set by any process with prctl), and the tool shows them as root.

On a terminal a control character is shown escaped (ESC as `\\x1b`), never sent, so no escape sequence in the
data can retitle the window, clear the screen or write the clipboard (OSC 52). In a spreadsheet a cell that
starts like a formula is quoted. JSON is written strictly (no NaN, keys as text). Every terminal writer, the
explorer's panels and the exporters go through this module.
"""

from __future__ import annotations

import io
import json
import math
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import islice
from typing import Any, TextIO

# C0 controls, DEL and C1 controls (8-bit CSI/OSC), the line and paragraph separators (a reader may break a line
# there: str.splitlines does), and the bidirectional overrides that reorder what is shown
_OTHERS = "\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_ANY_CONTROL = re.compile(f"[\x00-\x1f{_OTHERS}]")
_CONTROL_BUT_NEWLINE = re.compile(f"[\x00-\x08\x0b-\x1f{_OTHERS}]")  # tabs and newlines kept
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _escape(m: re.Match[str]) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def line(text: str) -> str:
    """`text` for one line of a terminal or a panel: every control character, newline included, escaped."""
    return _ANY_CONTROL.sub(_escape, text) if _ANY_CONTROL.search(text) else text


def lines(text: str) -> str:
    """`text` that may span lines: newlines and tabs kept (kernel logs indent with tabs), every other control
    character escaped."""
    return _CONTROL_BUT_NEWLINE.sub(_escape, text) if _CONTROL_BUT_NEWLINE.search(text) else text


def searchable(text: str) -> str:
    """`text` as a filter or search matches it, lower-cased: raw and as shown (`line`), so that both what the
    screen shows (`\\x1b]0;pwned`) and a part of the raw text find it."""
    shown = line(text)
    return (text if shown == text else f"{text}\x00{shown}").lower()


def csv_cell(text: str) -> str:
    """A text cell a spreadsheet shows as text: control characters escaped (newlines kept: CSV quotes them) and a
    cell that starts like a formula (= + - @, a tab or a carriage return) prefixed with a quote, as OWASP's CSV
    injection guidance recommends."""
    text = lines(text)
    return "'" + text if text.startswith(_FORMULA_START) else text


def neutral(stream: TextIO) -> TextIO:
    """`stream` wrapped in `Neutral` (once)."""
    return stream if isinstance(stream, Neutral) else Neutral(stream)  # type: ignore[return-value]


def raw(stream: TextIO) -> TextIO:
    """The stream a `Neutral` wraps: for the tool's own control sequences (a progress line's redraw)."""
    return stream.stream if isinstance(stream, Neutral) else stream


class Neutral(io.TextIOBase):
    """A text stream that escapes control characters (newlines and tabs kept) before they reach the one it wraps: the
    CLI's stdout and stderr, so that nothing a command prints from its input can drive the terminal."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, s: str) -> int:
        self.stream.write(lines(s))
        return len(s)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", "utf-8")

    def writable(self) -> bool:
        return True


def jsonable(value: Any) -> Any:
    """`value` as strict JSON holds it: non-finite numbers and bytes as text, map keys as text, tuples as lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {k if isinstance(k, str) else _text_of(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | bool):
        return value
    return _text_of(value)


def _text_of(o: Any) -> str:
    """Values JSON lacks: bytes as hex, anything else as its text."""
    return bytes(o).hex() if isinstance(o, bytes | bytearray | memoryview) else str(o)


def json_encoder(**kw: Any) -> json.JSONEncoder:
    """Strict JSON in ASCII (no NaN or Infinity, every control and non-ASCII character escaped), for `json_text`."""
    return json.JSONEncoder(allow_nan=False, default=_text_of, **kw)


def json_text(value: Any, encoder: json.JSONEncoder | None = None) -> str:
    """`value` as strict JSON: the common case encoded at once, a value holding NaN or keys that are not text
    through `jsonable` first."""
    enc = encoder or json_encoder()
    try:
        return enc.encode(value)
    except (ValueError, TypeError):
        return enc.encode(jsonable(value))


@dataclass(frozen=True)
class Streamed:
    """A JSON list that `write_json` writes an item at a time: a million outstanding page-request groups as dicts
    would take gigabytes, one at a time they take one."""

    items: Callable[[], Iterable[Any]]


def write_json(value: Any, out: TextIO, indent: int = 2) -> None:
    """`value` as strict JSON on `out`, indented, with each `Streamed` list in it written item by item. Each stands
    in the encoded text as a marker no data can forge: a token drawn at random for this call."""
    token = secrets.token_hex(8)
    streams: list[Streamed] = []

    def mark(v: Any) -> Any:
        if isinstance(v, Streamed):
            streams.append(v)
            return f"\0{token}-{len(streams) - 1}\0"
        if isinstance(v, dict):
            return {k: mark(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [mark(x) for x in v]
        return v

    enc = json_encoder(indent=indent)
    text = json_text(mark(value), enc)
    parts = re.split(rf'"\\u0000{token}-(\d+)\\u0000"', text)
    out.write(parts[0])
    for i in range(1, len(parts), 2):
        outer = "\n" + re.search(r"( *)[^\n]*$", parts[i - 1]).group(1)  # type: ignore[union-attr]
        sep, items = "[", iter(streams[int(parts[i])].items())
        while batch := list(islice(items, 4096)):  # encoded a batch at a time, re-indented
            out.write(sep + json_text(batch, enc)[1:-2].replace("\n", outer))
            sep = ","
        out.write("[]" if sep == "[" else outer + "]")
        out.write(parts[i + 1])
