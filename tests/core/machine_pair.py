"""A host's and a guest's recordings made to be merged: known clocks, one device name on both machines, and
the same PASID's lifecycle on each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from explorer.events import Event, Kind, make
from explorer.machines import ClockSnapshot, Machine
from explorer.recording import DeviceInfo, Header, RecordingWriter

BDF = "0000:00:03.0"  # the host's device and the guest's have the same name: they are still two devices
REAL0 = 1_764_900_000_000_000_000  # a wall-clock time (ns)
S = 1_000_000_000


def clocks(mono: int, real: int, spread: int = 400) -> ClockSnapshot:
    return ClockSnapshot(mono, real, mono + 7 * S, spread)


def write(path: Path, machine: Machine, events: list[Event], probes: dict[str, Any] | None = None,
          snapshots: tuple[dict[str, Any], dict[str, Any]] | None = None) -> Path:
    """A capture of `machine`; `probes` says what it could not see, `snapshots` are the kernel's own state at its
    start (kept in the header) and its end (in the footer)."""
    header = Header("capture", clock="monotonic", host={"kernel": machine.kernel or "6.18.0"},
                    devices=[DeviceInfo(BDF, 20, True, True)], machines=[machine], probes=probes or {},
                    extra={"snapshots": [snapshots[0]]} if snapshots else {})
    with RecordingWriter(path, header) as w:
        w.extend(events)
        w.close(**({"snapshots": [snapshots[1]]} if snapshots else {}))
    return path


def lifecycle(t: int, *, guest: bool) -> list[Event]:
    """PASID 5 allocated, attached, faulted on and answered: the same numbers on either machine."""
    dtype = "nested" if guest else "sva"
    out = [make(Kind.PASID_ALLOC, t, pasid=5, path="sva", owner="pid 7", mm=7),
           make(Kind.PASID_ATTACH, t + 10, device=BDF, pasid=5, domain=1, domain_type=dtype)]
    return out


# The host's clock reads 1000 s when the wall clock reads REAL0; the guest (booted later) reads 38 s then.
HOST = Machine("host", "boot-h", "6.18.0", "monotonic", clocks(1000 * S, REAL0), clocks(1060 * S, REAL0 + 60 * S))
GUEST = Machine("lab-6.12", "boot-g", "6.12.118", "monotonic", clocks(40 * S, REAL0 + 2 * S + 3000),
                clocks(90 * S, REAL0 + 52 * S + 1000))


def pair(tmp_path: Path, host_events: list[Event], guest_events: list[Event], guest: Machine = GUEST) -> list[str]:
    return [str(write(tmp_path / "host.pasidrec", HOST, host_events)),
            str(write(tmp_path / "guest.pasidrec", guest, guest_events))]


def request(t: int, prg: int, addr: int) -> Event:
    return make(Kind.PAGE_REQUEST, t, device=BDF, pasid=5, prg=prg, addr=addr, last=True)


def response(t: int, prg: int, by: str) -> Event:
    return make(Kind.PAGE_RESPONSE, t, device=BDF, pasid=5, prg=prg, code=0, by=by)
