"""What a recording says about where it came from: host, clock, capture coverage and the device table."""

from __future__ import annotations

import os
import platform
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Any

FORMAT_NAME = "pasidrec"
FORMAT_VERSION = 1


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
    def from_dict(cls, d: dict[str, Any]) -> DeviceInfo:
        known = {"name", "pasid_width", "pri", "ats", "driver"}
        return cls(str(d.get("name", "?")), d.get("pasid_width"), d.get("pri"), d.get("ats"), d.get("driver"),
                   {k: v for k, v in d.items() if k not in known})


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
    format: str = FORMAT_NAME
    version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {
            "format": self.format, "version": self.version, "source": self.source, "host": self.host,
            "clock": self.clock, "probes": self.probes, "devices": [dv.to_dict() for dv in self.devices],
            "created_unix": self.created_unix,
        }
        if self.title is not None:
            d["title"] = self.title
        if self.description is not None:
            d["description"] = self.description
        return {**self.extra, **d}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Header:
        known = {"format", "version", "source", "host", "clock", "title", "description", "probes", "devices",
                 "created_unix"}
        return cls(
            source=str(d.get("source", "?")), host=dict(d.get("host") or {}), clock=str(d.get("clock", "?")),
            title=d.get("title"), description=d.get("description"), probes=dict(d.get("probes") or {}),
            devices=[DeviceInfo.from_dict(x) for x in d.get("devices") or [] if isinstance(x, dict)],
            created_unix=float(d.get("created_unix") or 0.0), format=str(d.get("format")),
            version=int(d.get("version") or 0), extra={k: v for k, v in d.items() if k not in known},
        )

    @property
    def kernel(self) -> str | None:
        return self.host.get("kernel")


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
