"""What a recording says about where it came from: host, clock, capture coverage and the device table."""

from __future__ import annotations

import os
import platform
import reprlib
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ..machines import BadMachines, Machine, parse_table

FORMAT_NAME = "pasidrec"
FORMAT_VERSION = 3  # the newest this reader reads
# Version 2 adds machines: a merged recording's rows name their machine (a tenth item) and its header lists them.
# A recording of one machine is written as version 1 (its `machines` key is one older readers keep and ignore).
MERGED_VERSION = 2
# Version 3: chunks hold compressed columns (recording.packed) instead of rows; the writer's default.
PACKED_VERSION = 3
UNKNOWN_VERSION = 0  # a damaged header's (Header.unread): no file is written with it
HOST_TEXT_KEYS = ("hostname", "kernel", "arch", "boot_id")
MAX_PASID_WIDTH = 32  # PCIe allows 20; more would make `max_pasids` absurd
_WIDTH = f"an integer from 0 to {MAX_PASID_WIDTH}"


class BadHeader(ValueError):
    """A header this explorer cannot use; the reader adds the file and the header frame's byte offset."""


def _bad(key: str, expected: str, value: Any) -> BadHeader:
    return BadHeader(f"header key {key}: expected {expected}, found {reprlib.repr(value)}")


def _get(d: dict[str, Any], key: str, want: type | tuple[type, ...], expected: str, where: str = "",
         default: Any = None) -> Any:
    """d[key], or `default` when absent or nil; a value of another type (a bool is no number) is refused."""
    value = d.get(key)
    if value is None:
        return default
    wants = want if isinstance(want, tuple) else (want,)
    if isinstance(value, wants) and (bool in wants or not isinstance(value, bool)):
        return value
    raise _bad(f"{where}{key}", expected, value)


@dataclass(slots=True)
class DeviceInfo:
    """A device as the kernel names it, with what bounds its PASIDs and whether it can page-fault."""

    name: str
    pasid_width: int | None = None  # bits; max PASIDs = 1 << width
    pri: bool | None = None
    ats: bool | None = None
    driver: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def max_pasids(self) -> int | None:
        return None if self.pasid_width is None else 1 << self.pasid_width

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        extra = d.pop("extra")
        return {**extra, **{k: v for k, v in d.items() if v is not None}}

    @classmethod
    def from_dict(cls, d: Any, where: str = "device") -> DeviceInfo:
        """Parse a device table entry; a value of the wrong type raises BadHeader naming `where` and the key."""
        if not isinstance(d, dict):
            raise _bad(where, "a map", d)
        name = _get(d, "name", str, "a string", f"{where}.")
        if name is None:
            raise _bad(f"{where}.name", "a string", name)
        width = _get(d, "pasid_width", int, _WIDTH, f"{where}.")
        if width is not None and not 0 <= width <= MAX_PASID_WIDTH:
            raise _bad(f"{where}.pasid_width", _WIDTH, width)
        known = {"name", "pasid_width", "pri", "ats", "driver"}
        return cls(name, width, _get(d, "pri", bool, "true or false", f"{where}."),
                   _get(d, "ats", bool, "true or false", f"{where}."), _get(d, "driver", str, "a string", f"{where}."),
                   {k: v for k, v in d.items() if k not in known})


SCENARIO_CLOCK = "scenario"  # a scenario's clock: its times count from its own 0, as its steps' `at` say
# How a header's `unavailable` probes table names every PASID lifecycle hook at once (an import of a log, a damaged
# header): the model then judges what a missing event could explain as uncertain (simulator/coverage.py)
LIFECYCLE = "PASID lifecycle"


@dataclass(slots=True)
class Header:
    """The first frame of a recording. Unknown keys from newer writers are kept in `extra`."""

    source: str  # "capture", "scenario", "workload", "import:<format>"
    host: dict[str, Any] = field(default_factory=dict)
    clock: str = "monotonic"
    title: str | None = None
    description: str | None = None
    probes: dict[str, Any] = field(default_factory=dict)  # {"attached": [...], "unavailable": {hook: why}}
    devices: list[DeviceInfo] = field(default_factory=list)
    created_unix: float = field(default_factory=time.time)
    # Which machines the events happened on, with their clocks (explorer/machines.py); empty: not named (a
    # recording from before machines, or one made without a machine: one host, its clock unknown)
    machines: list[Machine] = field(default_factory=list)
    format: str = FORMAT_NAME
    version: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        version = max(self.version, MERGED_VERSION) if len(self.machines) > 1 else self.version
        d = {
            "format": self.format, "version": version, "source": self.source, "host": self.host,
            "clock": self.clock, "probes": self.probes, "devices": [dv.to_dict() for dv in self.devices],
            "created_unix": self.created_unix,
        }
        if self.title is not None:
            d["title"] = self.title
        if self.description is not None:
            d["description"] = self.description
        if self.machines:
            d["machines"] = [m.to_dict() for m in self.machines]
        return {**self.extra, **d}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Header:
        """Parse a header read from a file, refusing (BadHeader) what later code would trip over.

        The version is checked before the other keys: a newer writer may give them other types."""
        if d.get("format") != FORMAT_NAME:
            raise BadHeader("header does not name the pasidrec format")
        version = _get(d, "version", int, "a positive integer")
        if version is None or version < 1:
            raise _bad("version", "a positive integer", version)
        if version > FORMAT_VERSION:
            raise BadHeader(f"format version {version} is newer than this explorer reads ({FORMAT_VERSION}); "
                            f"upgrade pasid-explorer")
        host = _get(d, "host", dict, "a map") or {}
        for key in HOST_TEXT_KEYS:
            _get(host, key, str, "a string", "host.")
        probes = _get(d, "probes", dict, "a map") or {}
        _get(probes, "attached", list, "a list", "probes.")
        for key in ("unavailable", "invisible_kinds"):
            _get(probes, key, dict, "a map", "probes.")
        devices = _get(d, "devices", list, "a list") or []
        try:
            machines = parse_table(d["machines"]) if d.get("machines") is not None else []
        except BadMachines as e:
            raise BadHeader(f"header key {e}") from None
        known = {"format", "version", "source", "host", "clock", "title", "description", "probes", "devices",
                 "created_unix", "machines"}
        return cls(
            source=_get(d, "source", str, "a string", default="?"), host=dict(host),
            clock=_get(d, "clock", str, "a string", default="?"), title=_get(d, "title", str, "a string"),
            description=_get(d, "description", str, "a string"), probes=dict(probes),
            devices=[DeviceInfo.from_dict(x, f"devices[{i}]") for i, x in enumerate(devices)],
            created_unix=float(_get(d, "created_unix", (int, float), "a number", default=0.0)),
            machines=machines, format=FORMAT_NAME, version=version,
            extra={k: v for k, v in d.items() if k not in known},
        )

    @classmethod
    def unread(cls, why: str) -> Header:
        """The header of a recording whose own header frame is damaged: its host, kernel, devices, probes and
        machines are unknown, so it says it could not show the PASID lifecycle (as an import of a log does) and
        the model judges its events uncertain from the start, by the current kernel's rules."""
        return cls(source="?", clock="?", probes={"unavailable": {LIFECYCLE: why}}, created_unix=0.0,
                   version=UNKNOWN_VERSION)

    @property
    def kernel(self) -> str | None:
        return self.host.get("kernel")

    @property
    def machine_table(self) -> list[Machine]:
        """The machines, first the one whose clock is the timeline's; a recording naming none is one host whose
        clock is known only when the header says it is monotonic (a capture's)."""
        if self.machines:
            return self.machines
        clock = self.clock if self.clock == "monotonic" else None
        return [Machine(boot_id=self.host.get("boot_id"), kernel=self.kernel, clock=clock)]


def this_host() -> dict[str, Any]:
    """Host facts for a live capture's header: enough to tell which kernel rules apply and which boot it was."""
    boot_id = None
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot_id = f.read().strip()
    except OSError:
        pass
    return {"hostname": socket.gethostname(), "kernel": platform.release(), "arch": platform.machine(),
            "boot_id": boot_id, "pid": os.getpid()}
