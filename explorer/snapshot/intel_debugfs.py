"""Intel IOMMU debugfs (/sys/kernel/debug/iommu/intel/, CONFIG_INTEL_IOMMU_DEBUGFS), as drivers/iommu/intel/
debugfs.c prints it (5.2 to 6.x):

    dmar_translation_struct   per IOMMU: "IOMMU dmar0: Root Table Address: 0x..." then one line per present
                              context entry, or in scalable mode per present PASID table entry:
                              "00:0a.0\t0x<root hi>:0x<root lo>\t0x<ctx hi>:0x<ctx lo>\t<pasid>\t0x<v2>:0x<v1>:0x<v0>"
                              (PASID -1: legacy mode, no PASID table); "DMA Remapping is not enabled on dmar0"
    invalidation_queue        "Invalidation queue on IOMMU: dmar0" / " Base: 0x...\tHead: 20\tTail: 20" + entries
    dmar_perf_latency         per IOMMU "IOMMU: dmar0 Register Base Address: fed90000", a line of bucket names, then
                              one row per latency type being counted ("   inv_iotlb" and 10 "%12lld" columns:
                              7 buckets, min, max, average in us); none until root writes 1, 2 or 3 to the file
                              (drivers/iommu/intel/perf.c dmar_latency_snapshot(), the same in 6.12.118 and 7.3.4)

A PASID table entry's translation type is PGTT (val[0] bits 8:6) and its domain ID val[1] bits 15:0
(drivers/iommu/intel/pasid.h pasid_set_translation_type(), pasid_set_domain_id()). PASID 0 is the device's
RID_PASID entry (its default DMA domain), which the kernel sets up itself.
"""

from __future__ import annotations

import re
from typing import Any

_IOMMU = re.compile(r"IOMMU (?P<name>\S+): Root Table Address: 0x(?P<addr>[0-9a-fA-F]+)")
_DISABLED = re.compile(r"DMA Remapping is not enabled on (?P<name>\S+)")
_ENTRY = re.compile(r"(?P<bdf>[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7])\t0x[0-9a-fA-F]{16}:0x[0-9a-fA-F]{16}\t"
                    r"0x(?P<ctx_hi>[0-9a-fA-F]{16}):0x(?P<ctx_lo>[0-9a-fA-F]{16})\t(?P<pasid>-?\d+)\s*\t"
                    r"0x(?P<v2>[0-9a-fA-F]{16}):0x(?P<v1>[0-9a-fA-F]{16}):0x(?P<v0>[0-9a-fA-F]{16})\s*$")
_LATENCY_IOMMU = re.compile(r"IOMMU: (?P<name>\S+) Register Base Address: [0-9a-fA-F]+$")
_LATENCY_ROW = re.compile(r"\s*(?P<type>inv_iotlb|inv_devtlb|inv_iec|svm_prq)(?P<values>(?:\s+\d+){10})\s*$")
LATENCY_COLUMNS = ("<0.1us", "0.1us-1us", "1us-10us", "10us-100us", "100us-1ms", "1ms-10ms", ">=10ms", "min_us",
                   "max_us", "average_us")  # perf.c latency_counter_names[]
_QUEUE = re.compile(r"Invalidation queue on IOMMU: (?P<name>\S+)")
_HEAD = re.compile(r"\s*Base: 0x(?P<base>[0-9a-fA-F]+)\s+Head: (?P<head>\d+)\s+Tail: (?P<tail>\d+)")
PGTT = {1: "first-stage", 2: "second-stage", 3: "nested", 4: "pass-through"}


class BadDump(ValueError):
    """A debugfs file whose text is not what debugfs.c prints."""


def translation_struct(text: str, names: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
    """{"iommus": {name: {"enabled", "scalable"}}, "devices": {device: {"iommu", "pasids": [{"pasid", "pgtt",
    "domain_id"}]}}} (a list: recordings' maps take text keys only). The dump prints no PCI segment: `names` gives
    each IOMMU's devices by "bus:dev.fn" (from sysfs); a device it does not list is named in segment 0000."""
    names = names or {}
    iommus: dict[str, dict[str, Any]] = {}
    devices: dict[str, dict[str, Any]] = {}
    current = None
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("B.D.F"):
            continue
        if (m := _IOMMU.match(line)) is not None:
            current = m["name"]
            iommus[current] = {"enabled": True, "scalable": False}
        elif (m := _DISABLED.match(line)) is not None:
            iommus[m["name"]] = {"enabled": False, "scalable": False}
        elif (m := _ENTRY.match(line)) is not None and current is not None:
            bdf = m["bdf"].lower()
            name = names.get(current, {}).get(bdf, f"0000:{bdf}")
            dev = devices.setdefault(name, {"iommu": current, "pasids": []})
            pasid = int(m["pasid"])
            if pasid >= 0:
                iommus[current]["scalable"] = True
                v0, v1 = int(m["v0"], 16), int(m["v1"], 16)
                dev["pasids"].append({"pasid": pasid, "pgtt": PGTT.get(v0 >> 6 & 7, f"type {v0 >> 6 & 7}"),
                                      "domain_id": v1 & 0xFFFF})
        else:
            raise BadDump(f"line {no}: not a line of dmar_translation_struct: {line[:80]!r}")
    return {"iommus": iommus, "devices": devices}


def invalidation_queue(text: str) -> dict[str, dict[str, int]]:
    """{iommu: {"head", "tail"}}: head == tail means the hardware has done every queued invalidation."""
    out: dict[str, dict[str, int]] = {}
    current = None
    for line in text.splitlines():
        if (m := _QUEUE.match(line)) is not None:
            current = m["name"]
        elif current is not None and (m := _HEAD.match(line)) is not None:
            out[current] = {"head": int(m["head"]), "tail": int(m["tail"])}
    return out


def latency(text: str) -> dict[str, dict[str, dict[str, int]]]:
    """{iommu: {type: {column: value}}}: an IOMMU with no types is counting none (the kernel's default)."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    current = None
    for no, line in enumerate(text.splitlines(), 1):
        if (m := _LATENCY_IOMMU.match(line)) is not None:
            current = out.setdefault(m["name"], {})
        elif current is not None and (m := _LATENCY_ROW.match(line)) is not None:
            current[m["type"]] = dict(zip(LATENCY_COLUMNS, map(int, m["values"].split()), strict=True))
        elif line.strip() and not (current is not None and line.split()[:1] == ["<0.1us"]):
            raise BadDump(f"line {no}: not a line of dmar_perf_latency: {line[:80]!r}")
    return out
