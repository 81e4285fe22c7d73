"""The filter line: `dev:6a:01 pasid:3 pid:3100 comm:qemu kind:fault,page_request free text`. Pure parsing."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..events import KINDS

FILTER_HELP = ("dev:BDF  pasid:N  pid:N  comm:NAME  kind:K[,K]  (kind:anomaly keeps rows with anomalies); "
               "other words match row labels, owners and drivers")


class FilterSyntaxError(ValueError):
    """A filter the user typed that cannot mean anything; the message says which word and why."""


@dataclass(frozen=True, slots=True)
class Filter:
    devices: tuple[str, ...] = ()
    pasids: frozenset[int] = frozenset()
    pids: frozenset[int] = frozenset()
    comms: tuple[str, ...] = ()
    kinds: frozenset[str] = frozenset()
    words: tuple[str, ...] = ()
    text: str = field(default="", compare=False)

    @property
    def active(self) -> bool:
        return bool(self.devices or self.pasids or self.pids or self.comms or self.kinds or self.words)

    @property
    def event_kinds(self) -> frozenset[str]:
        """Kinds that restrict which marks show (the anomaly pseudo-kind selects rows, not marks)."""
        return self.kinds - {"anomaly"}


def parse_filter(text: str) -> Filter:
    devices: list[str] = []
    comms: list[str] = []
    words: list[str] = []
    pasids: set[int] = set()
    pids: set[int] = set()
    kinds: set[str] = set()
    for word in text.split():
        key, sep, value = word.partition(":")
        key = key.lower()
        if not sep or key not in ("dev", "device", "pasid", "pid", "comm", "kind"):
            words.append(word.lower())
            continue
        if not value:
            raise FilterSyntaxError(f"'{word}': {key}: needs a value")
        if key in ("dev", "device"):
            devices.append(value.lower())
        elif key == "comm":
            comms.append(value.lower())
        elif key in ("pasid", "pid"):
            try:
                numbers = {int(v, 0) for v in value.split(",")}
            except ValueError:
                raise FilterSyntaxError(f"'{word}': {key} takes numbers (3, 0x3 or 3,4)") from None
            (pasids if key == "pasid" else pids).update(numbers)
        else:
            for k in value.lower().split(","):
                if k not in KINDS:
                    raise FilterSyntaxError(f"'{word}': unknown kind {k!r} (known: {', '.join(KINDS)})")
                kinds.add(k)
    return Filter(tuple(devices), frozenset(pasids), frozenset(pids), tuple(comms), frozenset(kinds), tuple(words),
                  text.strip())
