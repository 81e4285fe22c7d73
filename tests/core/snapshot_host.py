"""A made-up host for snapshot tests: config space with PASID, PRI and ATS, an Intel IOMMU debugfs built from
debugfs.c's formats (snapshot_fixtures/), and a recording that keeps a start and an end snapshot."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import Any

from explorer.events import AllocPath, DomainType, Kind, make
from explorer.recording import Header, RecordingWriter
from explorer.snapshot import take

FIXTURES = Path(__file__).parent / "snapshot_fixtures"
DEV = "0000:00:0a.0"


def config_space(width: int = 20, pasid_on: bool = True, pri_status: int = 0) -> bytes:
    """4 KiB of config space with ATS at 0x100, PRI at 0x110 and PASID at 0x120 (PCIe base spec 7.8.x)."""
    b = bytearray(4096)
    struct.pack_into("<HHI", b, 0, 0x8086, 0x0B25, 0x08800000)  # vendor, device, class 0x088000 (rev 0)
    struct.pack_into("<IHH", b, 0x100, 0x0F | 1 << 16 | 0x110 << 20, 0x20, 0x8000)  # ATS: page aligned; enabled
    struct.pack_into("<IHHII", b, 0x110, 0x13 | 1 << 16 | 0x120 << 20, 1, pri_status, 512, 256)  # PRI
    struct.pack_into("<IHH", b, 0x120, 0x1B | 1 << 16, width << 8 | 0x6, int(pasid_on))  # PASID, exec+priv
    return bytes(b)


def host(tmp_path: Path, dump: str | None = None) -> Path:
    dev = tmp_path / "sys/bus/pci/devices" / DEV
    dev.mkdir(parents=True)
    (dev / "config").write_bytes(config_space())
    intel = tmp_path / "sys/kernel/debug/iommu/intel"
    intel.mkdir(parents=True)
    (intel / "dmar_translation_struct").write_text(
        dump if dump is not None else (FIXTURES / "dmar_translation_struct").read_text())
    shutil.copy(FIXTURES / "invalidation_queue", intel)
    (intel / DEV / "1f").mkdir(parents=True)  # a paging domain on PASID 0x1f (6.7 on)
    # sysfs names dmar0's devices in full: 00:02.0 sits in segment 0001 on this made-up host
    links = tmp_path / "sys/class/iommu/dmar0/devices"
    links.mkdir(parents=True)
    (links / "0001:00:02.0").mkdir()
    return tmp_path


def snapshots(tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A start snapshot of the made-up host and an end one whose PASID table gained PASID 9 and whose PRI shows
    Response Failure."""
    start = take(host(tmp_path / "host"))
    start["taken_ns"] = 50
    end = json.loads(json.dumps(start))
    end["taken_ns"] = 300
    end["intel"]["devices"][DEV]["pasids"].append({"pasid": 9, "pgtt": "first-stage", "domain_id": 4})
    end["pci"][DEV]["pri"]["response_failure"] = True
    return start, end


def recording(tmp_path: Path, start: dict, end: dict) -> Path:
    header = Header(source="capture", devices=[], probes={"attached": ["pasid_alloc", "pasid_attach"]},
                    extra={"snapshots": [start]})
    events = [make(Kind.PASID_ALLOC, 100, pasid=7, path=AllocPath.SVA, owner="pid 1 (a)", mm=1),
              make(Kind.PASID_ATTACH, 200, device=DEV, pasid=7, domain=1, domain_type=DomainType.SVA)]
    out = tmp_path / "r.pasidrec"
    w = RecordingWriter(out, header)
    w.extend(events)
    w.close("complete", snapshots=[end])  # the end's snapshot goes in the footer, as RecordingTee.close puts it
    return out


