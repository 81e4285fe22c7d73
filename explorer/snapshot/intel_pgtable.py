"""Intel IOMMU page-table dumps: `<debugfs>/iommu/intel/<device>/domain_translation_struct` (the device's own
domain, IOMMU_NO_PASID) and `<device>/<PASID in hex>/domain_translation_struct` (a paging domain attached to that
PASID), as drivers/iommu/intel/debugfs.c domain_translation_struct_show() and pgtable_walk_level() print them
(the same in 6.12.118 and 7.3.4; the per-PASID files since 6.7):

    Device 0000:01:00.0 with pasid 0 @0x9a4000          legacy mode: "Device 0000:01:00.0 @0x9a4000"
    IOVA_PFN         \tPML5E             \tPML4E  ...  \tPTE
    0x00000000fffff |\t0x<PML5E>\t0x<PML4E>\t0x<PDPE>[\t0x<PDE>[\t0x<PTE>]]   one line per present leaf
    DMA Remapping is not enabled on dmar0

The last entry printed on a line is the leaf: a PDPE maps 1 GiB, a PDE 2 MiB, a PTE 4 KiB. The file is empty when
the device has no context entry, its PASID entry is absent, or the entry is pass-through (nothing to walk). A busy
domain's dump runs to megabytes: the caller reads a bounded prefix and a snapshot keeps counts and the first
mappings, saying how much was cut. The bound is ours only: the file is a single_open() seq_file, so the kernel
renders the whole dump before the first byte is read, walking the table under iommu->lock and walking it again each
time its buffer doubles (fs/seq_file.c seq_read_iter()); a table too large for kvmalloc() fails with ENOMEM, which
the snapshot names as unreadable.
"""

from __future__ import annotations

import re
from typing import Any

from .intel_debugfs import BadDump

_DEVICE = re.compile(r"Device (?P<dev>[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]) "
                     r"(?:with pasid (?P<pasid>[0-9a-f]+) )?@0x(?P<pgd>[0-9a-f]+)$")
_DISABLED = re.compile(r"DMA Remapping is not enabled on \S+$")
_HEADER = re.compile(r"IOVA_PFN\s+PML5E\s+PML4E\s+PDPE\s+PDE\s+PTE\s*$")
_ROW = re.compile(r"0x(?P<pfn>[0-9a-f]{13,}) \|(?P<path>(?:\t0x[0-9a-f]{16}){3,5})\s*$")
LEAF_SIZE = {3: 1 << 30, 4: 2 << 20, 5: 4 << 10}  # entries printed on the row -> bytes the leaf maps
ADDR_MASK = ((1 << 52) - 1) & ~0xFFF  # a PTE's output address, bits 51:12 (VT-d spec 9.8, 9.9)
WRITE = 1 << 1  # bit 1: W in a second-stage entry, R/W in a first-stage one
KEEP = 16  # mappings kept whole per dump; the rest are counted


def first_line(text: str) -> dict[str, Any] | None:
    """{"device", "pasid", "pgd"} from a dump's "Device ..." line, or None when the text has none yet."""
    for line in text.splitlines():
        if (m := _DEVICE.match(line)) is not None:
            return {"device": m["dev"], "pasid": int(m["pasid"], 16) if m["pasid"] else None,
                    "pgd": int(m["pgd"], 16)}
    return None


def dump(text: str, cut_at: int = 0) -> dict[str, Any]:
    """{"pasid", "pgd", "mappings", "bytes", "writable", "pages": {size: count}, "iova_pfns": [first, last],
    "first": [{"iova_pfn", "size", "addr", "write"}]}, or {"pgd": None, "why"} when the kernel printed no table.
    With `cut_at`, `text` is that many bytes of a longer dump: its last, partial line is dropped and "cut" says so."""
    lines = text.splitlines()
    if cut_at and lines and not text.endswith("\n"):
        lines.pop()
    out: dict[str, Any] | None = None
    pages: dict[str, int] = {}
    first: list[dict[str, int | bool]] = []
    total = writable = 0
    lo = hi = None
    for no, line in enumerate(lines, 1):
        if not line.strip() or _DISABLED.match(line):
            continue
        if out is None:
            if (m := _DEVICE.match(line)) is None:
                raise BadDump(f"line {no}: not the \"Device ... @0x...\" line a page-table dump begins with: "
                              f"{line[:80]!r}")
            out = {"pasid": int(m["pasid"], 16) if m["pasid"] else None, "pgd": int(m["pgd"], 16)}
        elif _HEADER.match(line):
            continue
        elif (m := _ROW.match(line)) is not None:
            path = [int(v, 16) for v in m["path"].split("\t0x")[1:]]
            pfn, leaf, size = int(m["pfn"], 16), path[-1], LEAF_SIZE[len(path)]
            total += size
            writable += bool(leaf & WRITE)
            pages[_size_name(size)] = pages.get(_size_name(size), 0) + 1
            lo, hi = pfn if lo is None else min(lo, pfn), pfn if hi is None else max(hi, pfn)
            if len(first) < KEEP:
                first.append({"iova_pfn": pfn, "size": size, "addr": leaf & ADDR_MASK, "write": bool(leaf & WRITE)})
        else:
            raise BadDump(f"line {no}: not a line of domain_translation_struct: {line[:80]!r}")
    if out is None:
        why = "DMA remapping is not enabled" if any(_DISABLED.match(x) for x in lines) else \
            "no page table: no context or PASID entry, or a pass-through one"
        return {"pgd": None, "why": why}
    out |= {"mappings": sum(pages.values()), "bytes": total, "writable": writable, "pages": pages,
            "iova_pfns": [lo, hi] if lo is not None else [], "first": first}
    if cut_at:
        out["cut"] = f"only the first {cut_at >> 10} KiB of the dump were read: the counts cover that part"
    return out


def _size_name(size: int) -> str:
    return f"{size >> 30} GiB" if size >= 1 << 30 else f"{size >> 20} MiB" if size >= 1 << 20 else f"{size >> 10} KiB"
