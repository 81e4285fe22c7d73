"""Turns batches of raw probe records (numpy arrays of `record.REC`) into the core's event rows.

Pure Python and numpy: no bcc, no root, so every decoding rule is unit-tested on synthetic records. The hot
path is the ioctl record: a batch is split by command and each command's argument struct is read as numpy
columns, so the Python work per event is building its row, not parsing bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from errno import ENOSPC
from typing import Any, ClassVar

import msgpack
import numpy as np

from explorer.events import (
    IOMMU_PASID_INVALID,
    R_DEVICE,
    R_FIELDS,
    R_KIND,
    R_PASID,
    R_SOURCE,
    R_TS,
    AllocPath,
    Kind,
    Row,
    owner_of,
)
from explorer.pci import rid_to_pci
from explorer.recording.encoded import Col, Encoded, PackedRows
from explorer.sightings import Sightings, tier

from .hooks import DRIVER_RESPONSE_OPS, HOOKS
from .record import TEXT_BYTES, Ev
from .uapi_decode import (
    LAYOUTS,
    PAGE_RESPONSE,
    PGFAULT,
    REFINED,
    VFIO_COMPAT_COMMANDS,
    VFIO_CONTAINER_PROBES,
    UField,
    command_name,
    pasid_of,
    refine_args,
)

RowMaker = Callable[..., Row]
FdDevice = Callable[[int, int], str | None]  # (tgid, fd) -> the PCI device behind a VFIO device fd

FAULT_RECS_PER_IO = 4  # records the probe writes for one read or write on a fault-queue fd
# Bytes of fault-queue I/O per record: whole entries only, at most two TEXT_BYTES halves.
FAULT_READ_CHUNK = 2 * TEXT_BYTES // PGFAULT.size * PGFAULT.size
FAULT_WRITE_CHUNK = 2 * TEXT_BYTES // PAGE_RESPONSE.size * PAGE_RESPONSE.size
MAX_COOKIES = 1 << 16
IOMMU_FAULT_WRITE = 0x1  # include/linux/iommu.h: report_iommu_fault() flags
IOMMU_PGFAULT_FLAGS_PASID_VALID, IOMMU_PGFAULT_FLAGS_LAST_PAGE = 1, 2
OLD_FAULT_PAGE_REQ = 2  # iommu:dev_fault's `type` for a page request (1 is an unrecoverable fault) in 5.x
PAGE_REQUEST_PASID_VALID, PAGE_REQUEST_LAST_PAGE = 1, 2  # IOMMU_FAULT_PAGE_REQUEST_* (same bits in every era)
VTD_RESPONSE_CODES = {0x0: 0, 0x1: 1, 0xF: 2}  # QI_RESP_SUCCESS / INVALID / FAILURE -> ResponseCode
DEV_ID_COMMANDS = ("IOMMU_HWPT_ALLOC", "IOMMU_GET_HW_INFO", "IOMMU_VIOMMU_ALLOC", "IOMMU_VDEVICE_ALLOC")
DEVICE_FD_COMMANDS = ("VFIO_DEVICE_BIND_IOMMUFD", "VFIO_DEVICE_ATTACH_IOMMUFD_PT", "VFIO_DEVICE_DETACH_IOMMUFD_PT")
_COMPAT_NRS = frozenset(VFIO_COMPAT_COMMANDS)
_PACKER = msgpack.Packer(use_bin_type=True)

# Kernel events two hooks can see (a hook's `shares`), by record type, and which records are the second sighting
# (explorer.kernel_facts: a hook's `sighting_of`), kept as evidence on the first, never as an event.
SIGHTINGS = {int(h.ev): h.shares for h in HOOKS if h.ev is not None and h.shares}


TIERS = {int(h.ev): max(tier(g.name) for g in HOOKS if g.ev == h.ev) for h in HOOKS if h.ev is not None and h.shares}
SECOND_SIGHTINGS = frozenset(t for t, depth in TIERS.items() if depth)

SOURCES = {int(h.ev): h.name for h in HOOKS if h.ev is not None and not h.function}


def _distinct(col: np.ndarray) -> list[Any]:
    """A column's distinct values, in order; most batches have one, which takes no sort to find."""
    return [col[0].item()] if bool((col == col[0]).all()) else np.unique(col).tolist()


def _rows_of(col: np.ndarray, value: Any, distinct: list[Any]) -> np.ndarray:
    """The rows of `col` holding `value`, one of its `distinct` values."""
    return np.arange(len(col)) if len(distinct) == 1 else np.flatnonzero(col == value)


def _take(col: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """`col[rows]` for ascending distinct `rows`, without a copy when they are all of its rows."""
    return col if len(rows) == len(col) else col[rows]


def text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _field_dtype(fields: tuple[UField, ...]) -> np.dtype:
    return np.dtype({"names": [f.name for f in fields], "formats": ["<" + f.fmt for f in fields],
                     "offsets": [f.offset for f in fields], "itemsize": TEXT_BYTES})


@dataclass(slots=True)
class Decoder:
    """Stateful across batches: fault-queue cookies, iommufd device ids and fds learned from earlier calls.

    `kernel_page_requests` / `kernel_page_responses` say the kernel's own hooks report page requests and
    responses; fault-queue traffic then only feeds what it learns (which group a cookie answers) instead of
    producing the same events a second time.
    """

    device: str | None = None  # keep only events about this device (and those about none)
    fd_device: FdDevice | None = None
    kernel_page_requests: bool = False
    kernel_page_responses: bool = False
    kfunc_sources: dict[int, str] | None = None  # Ev -> "fentry:fn" / "kprobe:fn" of the kernel-function hooks
    unmatched_responses: int = 0  # responses written for a fault the capture never saw read
    _comm: dict[bytes, str] = field(default_factory=dict, init=False, repr=False)
    _sightings: Sightings = field(default_factory=Sightings, init=False, repr=False)  # kernel events seen lately
    _iommufd_devs: dict[tuple[int, int], str] = field(default_factory=dict, init=False, repr=False)
    _container_fds: set[tuple[int, int]] = field(default_factory=set, init=False, repr=False)  # iommufd / type1
    # (tgid, fault object, cookie) -> (device, PASID, PRG index) of the page fault read with that cookie
    _cookies: dict[tuple[int, int, int], tuple[str, int | None, int]] = field(default_factory=dict, init=False,
                                                                             repr=False)

    # -- batches ----------------------------------------------------------------------------------------------
    def packed(self, recs: np.ndarray) -> PackedRows:
        """A batch of records as encoded rows, in time order. Most ioctl records are written straight from
        their numpy columns (one template per command and argument variant); the few others become rows first."""
        if not len(recs):
            return PackedRows.empty()
        if not bool((np.diff(recs["ts"].astype(np.int64)) >= 0).all()):
            recs = recs[np.argsort(recs["ts"], kind="stable")]
        ioctl = recs["type"] == Ev.IOCTL
        calls = recs if ioctl.all() else recs[ioctl]
        parts, slow = self._ioctls(calls)
        slow += ((len(calls) + j, row) for j, rec in enumerate(recs[~ioctl]) for row in self._one(rec))
        if self.device is not None:
            slow = [(p, r) for p, r in slow if r[R_DEVICE] is None or r[R_DEVICE] == self.device]
        fast_pos = np.concatenate([pos for pos, _ in parts]) if parts else np.zeros(0, np.int64)
        procs, call_proc = self._call_procs(calls)
        if not slow:  # the records are in time order: so are the rows, in their records' order (no sort)
            kept = np.zeros(len(calls), bool)
            kept[fast_pos] = True
            rank = np.cumsum(kept) - 1
            rows = np.flatnonzero(kept)
            ts = _take(calls["ts"], rows).astype(np.int64)
            return PackedRows.assemble(ts, [(Kind.UAPI, None, None)], np.zeros(len(ts), np.uint32), list(procs),
                                       _take(call_proc, rows), [(rank[pos], enc) for pos, enc in parts])
        # time order; on a tie, ioctls first in record order, then the other rows in theirs
        ts = np.concatenate([calls["ts"][fast_pos].astype(np.int64),
                             np.fromiter((r[R_TS] for _, r in slow), np.int64, len(slow))])
        order = np.lexsort((np.concatenate([fast_pos, np.fromiter((p for p, _ in slow), np.int64, len(slow))]), ts))
        rank = np.empty(len(order), np.int64)
        rank[order] = np.arange(len(order))
        keys: dict[tuple[Any, Any, Any], int] = {(Kind.UAPI, None, None): 0}
        key_of = np.zeros(len(order), np.uint32)
        key_of[len(fast_pos):] = [keys.setdefault((r[R_KIND], r[R_DEVICE], r[R_PASID]), len(keys)) for _, r in slow]
        proc_of = np.concatenate([call_proc[fast_pos], np.fromiter(
            (procs.setdefault((r[4], r[5], r[6], r[R_SOURCE]), len(procs)) for _, r in slow), np.uint32, len(slow))])
        at, pieces = 0, []
        for pos, enc in parts:
            pieces.append((rank[at:at + len(pos)], enc))
            at += len(pos)
        pieces.append((rank[at:], [_PACKER.pack(r[R_FIELDS]) for _, r in slow]))
        return PackedRows.assemble(ts[order], list(keys), key_of[order], list(procs), proc_of[order], pieces)

    def rows(self, recs: np.ndarray) -> list[Row]:
        """Rows for a batch of records, in time order (the bulk path, decoded back)."""
        return self.packed(recs).rows()

    def _call_procs(self, calls: np.ndarray) -> tuple[dict[tuple[Any, Any, Any, Any], int], np.ndarray]:
        """The distinct processes (cpu, pid, comm, source) of ioctl records, and each record's index among them
        (most batches: one process on a few CPUs)."""
        if not len(calls):
            return {}, np.zeros(0, np.uint32)
        comm = calls["comm"]
        distinct, comm_of = ([comm[0]], np.zeros(len(comm), np.int64)) if bool((comm == comm[0]).all()) else \
            np.unique(comm, return_inverse=True)
        names = self._comms(list(distinct))
        ident = calls["tgid"].astype(np.uint64) << np.uint64(32) | calls["cpu"]
        if len(names) > 1:
            ident = np.stack([ident, comm_of.reshape(-1).astype(np.uint64)], axis=1).view("V16").reshape(-1)
        seen, of = np.unique(ident, return_inverse=True)
        pairs = seen.view(np.uint64).reshape(-1, 2).tolist() if len(names) > 1 else [(p, 0) for p in seen.tolist()]
        source = SOURCES[Ev.IOCTL]
        procs: dict[tuple[Any, Any, Any, Any], int] = {}  # (two raw names can decode to one)
        ids = np.array([procs.setdefault((p & 0xFFFFFFFF, p >> 32, names[c], source), len(procs)) for p, c in pairs],
                       np.uint32)
        return procs, ids[of.reshape(-1)]

    def _comms(self, raw: list[bytes]) -> list[str]:
        cache = self._comm
        out = []
        for c in raw:
            s = cache.get(c)
            if s is None:
                s = cache[c] = text(c)
            out.append(s)
        return out

    # -- ioctls: the hot path -----------------------------------------------------------------------------------
    def _ioctls(self, recs: np.ndarray) -> tuple[list[tuple[np.ndarray, Encoded]], list[tuple[int, Row]]]:
        """The batch's ioctl records: encoded in bulk per command where the row is a template's, else as rows.
        Each comes with its record's position in the batch."""
        parts: list[tuple[np.ndarray, Encoded]] = []
        slow: list[tuple[int, Row]] = []
        if not len(recs):
            return parts, slow
        cmds = recs["cmd"]
        distinct = _distinct(cmds)
        for cmd in sorted(distinct, key=lambda c: c & 0xFF in _COMPAT_NRS):  # compat calls last
            pos = _rows_of(cmds, cmd, distinct)
            if cmd & 0xFF in _COMPAT_NRS:
                pos = pos[self._on_container_fds(cmd & 0xFF, recs[pos])]
            elif cmd & 0xFF >= 0x80:
                pairs = _distinct(_take(recs["tgid"], pos).astype(np.uint64) << 32
                                  | _take(recs["fd"], pos).astype(np.uint32))
                self._container_fds.update((p >> 32, ((p & 0xFFFFFFFF) ^ 1 << 31) - (1 << 31)) for p in pairs)
            sel = _take(recs, pos)
            name = command_name(cmd)
            if name in DEVICE_FD_COMMANDS or name in DEV_ID_COMMANDS or name in REFINED:
                slow += zip(pos.tolist(), self._ioctl_rows(cmd, name, sel), strict=True)
            else:
                parts += [(_take(pos, rows), enc) for rows, enc in
                          self._ioctl_templates(cmd, name, sel)]
        return parts, slow

    def _on_container_fds(self, nr: int, sel: np.ndarray) -> np.ndarray:
        """VFIO type1 numbers 112..117 are device calls too: kept only on an fd that answered a container call
        (GET_API_VERSION, CHECK_EXTENSION, SET_IOMMU) or an iommufd call first."""
        keys = list(zip(sel["tgid"].tolist(), sel["fd"].tolist(), strict=True))
        if nr in VFIO_CONTAINER_PROBES:
            self._container_fds.update(k for k, r in zip(keys, sel["ret"].tolist(), strict=True) if r >= 0)
        return np.array([k in self._container_fds for k in keys], dtype=bool)

    def _ioctl_rows(self, cmd: int, name: str, sel: np.ndarray) -> list[Row]:
        ts, cpu, tgid = sel["ts"].tolist(), sel["cpu"].tolist(), sel["tgid"].tolist()
        comm, fd, ret = self._comms(sel["comm"].tolist()), sel["fd"].tolist(), sel["ret"].tolist()
        args = self._args(name, sel)
        uapi, source = Kind.UAPI, SOURCES[Ev.IOCTL]
        if name not in DEVICE_FD_COMMANDS and name not in DEV_ID_COMMANDS:  # most calls name no device or PASID
            return [[t, uapi, None, None, c, g, m, source, {"cmd": cmd, "name": name, "fd": f, "args": a, "ret": r}]
                    for t, c, g, m, f, a, r in zip(ts, cpu, tgid, comm, fd, args, ret, strict=True)]
        return [[t, uapi, self._call_device(name, g, f, a, r), pasid_of(name, a), c, g, m, source,
                 {"cmd": cmd, "name": name, "fd": f, "args": a, "ret": r}]
                for t, c, g, m, f, a, r in zip(ts, cpu, tgid, comm, fd, args, ret, strict=True)]

    def _ioctl_templates(self, cmd: int, name: str, sel: np.ndarray) -> list[tuple[np.ndarray, Encoded]]:
        """The field maps of calls of one command that name no device or PASID: one template per argument variant
        (the fields the caller's size covers, in values or out values), encoded from the records' columns."""
        columns: dict[str, Any] = {"fd": sel["fd"], "ret": sel["ret"]}
        out = []
        for rows, names, cols in self._arg_columns(name, sel):
            args = {n: Col(f"arg{i}") for i, n in enumerate(names)}
            template = {"cmd": cmd, "name": name, "fd": Col("fd"), "args": args, "ret": Col("ret")}
            part = {k: _take(v, rows) for k, v in columns.items()}
            part.update({f"arg{i}": c for i, c in enumerate(cols)})
            out.append((rows, Encoded(template, part, len(rows))))
        return out

    def _arg_columns(self, name: str, sel: np.ndarray) -> list[tuple[np.ndarray, list[str], list[np.ndarray]]]:
        """The calls grouped by argument variant: (their rows, field names, a numpy column per field). A field
        counts when it lies inside the size the caller passed; out values only after success."""
        layout = LAYOUTS.get(name)
        if layout is None:
            return [(np.arange(len(sel)), [], [])]
        size = sel["in"].view(_field_dtype(layout.fields[:1]))[layout.fields[0].name].astype(np.int64)
        visible = np.minimum(size, sel["n_in"].astype(np.int64))
        ok = (sel["ret"] == 0) & (sel["n_out"] > 0)
        variant = visible * 2 + ok
        out = []
        distinct = _distinct(variant)
        for v in distinct:
            rows_v = _rows_of(variant, v, distinct)
            vis, good = v >> 1, bool(v & 1)
            fields = layout.visible(vis)
            src_in = tuple(f for f in fields if f.io == "in" or (f.io == "inout" and not good))
            src_out = tuple(f for f in fields if good and f.io in ("out", "inout"))
            cols = []
            if src_in:
                view = _take(sel["in"], rows_v).view(_field_dtype(src_in))
                cols += [view[f.name] for f in src_in]
            if src_out:
                view = _take(sel["out"], rows_v).view(_field_dtype(src_out))
                cols += [view[f.name] for f in src_out]
            out.append((rows_v, [f.name for f in src_in + src_out], cols))
        return out

    def _args(self, name: str, sel: np.ndarray) -> list[dict[str, Any]]:
        """Each call's argument dict, for the calls that become rows one by one."""
        result: list[dict[str, Any]] = [{}] * len(sel)
        for rows_v, names, cols in self._arg_columns(name, sel):
            for r, vals in zip(rows_v.tolist(), zip(*(c.tolist() for c in cols), strict=True) if cols
                               else [()] * len(rows_v), strict=True):
                result[r] = dict(zip(names, vals, strict=True))
        return refine_args(name, result)

    def _call_device(self, name: str, tgid: int, fd: int, args: dict[str, Any], ret: int) -> str | None:
        """The PCI device a call is about, where the call says so (a VFIO device fd, an iommufd dev_id)."""
        if name in DEVICE_FD_COMMANDS:  # rare calls: the fd is looked up each time, as fds get reused
            device = self.fd_device(tgid, fd) if self.fd_device else None
            if device is not None and name == "VFIO_DEVICE_BIND_IOMMUFD" and ret == 0 and "out_devid" in args:
                self._iommufd_devs[(tgid, args["out_devid"])] = device
            return device
        if name in DEV_ID_COMMANDS and "dev_id" in args:
            return self._iommufd_devs.get((tgid, args["dev_id"]))
        return None

    def iommufd_device(self, tgid: int, dev_id: int) -> str:
        return self._iommufd_devs.get((tgid, dev_id)) or f"iommufd:{tgid}/dev{dev_id}"

    # -- everything else: low rates, one record at a time ----------------------------------------------------------
    def _one(self, rec: np.void) -> list[Row]:
        t = int(rec["type"])
        head = (int(rec["ts"]), int(rec["cpu"]), int(rec["tgid"]), self._comms([rec["comm"]])[0],
                SOURCES.get(t) or (self.kfunc_sources or {}).get(t, "probe"))

        def row(kind: str, device: str | None = None, pasid: int | None = None, **fields: Any) -> Row:
            return [head[0], kind, device, pasid, head[1], head[2], head[3], head[4],
                    {k: v for k, v in fields.items() if v is not None}]

        handler = self._handlers.get(t)
        if handler is None:
            return []
        r = Raw.of(rec)
        rows = handler(self, row, r)
        topic = SIGHTINGS.get(t)
        if topic is None or len(rows) != 1:
            return rows
        # one kernel event seen by several hooks is one event (explorer/sightings.py)
        return self._sightings.fold(topic, TIERS[t], head[0], int(rec["pid"]), rows[0], rows[0][R_SOURCE])

    def _exit(self, row: RowMaker, r: Raw) -> list[Row]:
        return [row(Kind.MM_EXIT, mm=r.tgid)]

    def _io_page_fault(self, row: RowMaker, r: Raw) -> list[Row]:
        return [row(Kind.FAULT, r.dev, addr=r.a, flags=r.cmd, vendor="generic",
                    access="write" if r.cmd & IOMMU_FAULT_WRITE else "read", driver=r.out_text or None)]

    def _group(self, row: RowMaker, r: Raw) -> list[Row]:
        return [row(Kind.GROUP_ADD if r.type == Ev.GROUP_ADD else Kind.GROUP_REMOVE, r.dev, group=r.cmd)]

    def _domain_attach(self, row: RowMaker, r: Raw) -> list[Row]:
        return [row(Kind.DOMAIN_ATTACH, r.dev)]

    def _map(self, row: RowMaker, r: Raw) -> list[Row]:
        return [row(Kind.MAP, iova=r.a, paddr=r.b, size=r.c)]

    def _unmap(self, row: RowMaker, r: Raw) -> list[Row]:
        return [row(Kind.UNMAP, iova=r.a, size=r.b, unmapped=r.c)]

    def _old_dev_fault(self, row: RowMaker, r: Raw) -> list[Row]:
        """iommu:dev_fault of vendor trees (never mainline): an unrecoverable fault or a page request."""
        flags, prg = r.b & 0xFFFFFFFF, r.b >> 32
        perm, pasid = r.c & 0xFFFFFFFF, r.c >> 32
        pasid_or_none = pasid if flags & PAGE_REQUEST_PASID_VALID else None
        if r.cmd != OLD_FAULT_PAGE_REQ:
            return [row(Kind.FAULT, r.dev, pasid_or_none, addr=r.a, code=r.fd, flags=flags, vendor="generic")]
        return [row(Kind.PAGE_REQUEST, r.dev, pasid_or_none, prg=prg, addr=r.a, perm=perm,
                    last=bool(flags & PAGE_REQUEST_LAST_PAGE))]

    def _old_dev_page_response(self, row: RowMaker, r: Raw) -> list[Row]:
        return [row(Kind.PAGE_RESPONSE, r.dev, r.c, prg=r.b, code=r.cmd)]

    def _prq(self, row: RowMaker, r: Raw) -> list[Row]:
        return [vtd_page_request(row, r.dev, r.a, r.b)]

    def _qi_page_response(self, row: RowMaker, r: Raw) -> list[Row]:
        return [vtd_page_response(row, r.a, r.b)]

    # -- iommufd fault queues ---------------------------------------------------------------------------------------
    @staticmethod
    def _beyond_copy(row: RowMaker, r: Raw, entry: int, chunk: int, what: str) -> list[Row]:
        """A call's first record knows its full byte count: entries past what the probe copies for one call
        are counted as lost, never dropped silently."""
        total = max(r.ret, 0) // entry
        copied = FAULT_RECS_PER_IO * (chunk // entry)
        if r.b != 0 or total <= copied:
            return []
        return [row(Kind.LOST, None, None, count=total - copied,
                    why=f"one fault-queue {what} carried {total} entries; the probe copies the first {copied}")]

    def _fault_reads(self, row: RowMaker, r: Raw) -> list[Row]:
        """Page faults a process read from its fault queue: remembered by cookie, so that its response can be
        tied to the group; events of their own only where the kernel's page-request hooks are missing."""
        out = self._beyond_copy(row, r, PGFAULT.size, FAULT_READ_CHUNK, "read")
        for off in range(0, len(r.data) - PGFAULT.size + 1, PGFAULT.size):
            f = {fl.name: struct.unpack_from("<" + fl.fmt, r.data, off + fl.offset)[0] for fl in PGFAULT.fields}
            pasid = f["pasid"] if f["flags"] & IOMMU_PGFAULT_FLAGS_PASID_VALID else None
            device = self.iommufd_device(r.tgid, f["dev_id"])
            self._cookies[(r.tgid, r.cmd, f["cookie"])] = (device, pasid, f["grpid"])
            if len(self._cookies) > MAX_COOKIES:  # faults never answered: forget the oldest
                del self._cookies[next(iter(self._cookies))]
            if not self.kernel_page_requests:
                out.append(row(Kind.PAGE_REQUEST, device, pasid, prg=f["grpid"], addr=f["addr"], perm=f["perm"],
                               last=bool(f["flags"] & IOMMU_PGFAULT_FLAGS_LAST_PAGE)))
        return out

    def _fault_writes(self, row: RowMaker, r: Raw) -> list[Row]:
        """Page responses a process wrote to its fault queue (accepted by the kernel)."""
        if r.ret <= 0:
            return []
        out = self._beyond_copy(row, r, PAGE_RESPONSE.size, FAULT_WRITE_CHUNK, "write")
        for off in range(0, len(r.data) - PAGE_RESPONSE.size + 1, PAGE_RESPONSE.size):
            cookie, code = struct.unpack_from("<II", r.data, off)
            group = self._cookies.pop((r.tgid, r.cmd, cookie), None)
            if group is None:
                self.unmatched_responses += 1
            elif not self.kernel_page_responses:
                device, pasid, prg = group
                out.append(row(Kind.PAGE_RESPONSE, device, pasid, prg=prg, code=code, by="user"))
        return out

    # -- kernel functions (fentry / kprobes, where the host permits) ------------------------------------------------
    def _pasid_alloc(self, row: RowMaker, r: Raw) -> list[Row]:
        path = AllocPath.IOASID if r.type == Ev.IOASID_ALLOC else AllocPath.SVA if r.b else AllocPath.DRIVER
        ok = r.ret == 0 and r.pasid is not None
        return [row(Kind.PASID_ALLOC, r.dev, r.pasid if ok else None, path=str(path), owner=r.owner,
                    mm=r.a if path == AllocPath.SVA else None, error=None if ok else r.ret or -ENOSPC)]

    def _pasid_free(self, row: RowMaker, r: Raw) -> list[Row]:
        path = {Ev.MM_PASID_DROP: AllocPath.SVA, Ev.IOASID_FREE: AllocPath.IOASID}.get(Ev(r.type))
        return [row(Kind.PASID_FREE, None, r.pasid, path=str(path) if path else None,
                    mm=r.a if r.type == Ev.MM_PASID_DROP else None)]

    def _sva_bind(self, row: RowMaker, r: Raw) -> list[Row]:
        return [row(Kind.SVA_BIND, r.dev, r.pasid if not r.ret else None, mm=r.a, handle=r.b or None,
                    error=r.ret or None)]

    def _sva_unbind(self, row: RowMaker, r: Raw) -> list[Row]:
        return [row(Kind.SVA_UNBIND, r.dev, r.pasid, mm=r.a, handle=r.b)]

    def _pasid_domain(self, row: RowMaker, r: Raw) -> list[Row]:
        kind = {Ev.PASID_ATTACH: Kind.PASID_ATTACH, Ev.PASID_REPLACE: Kind.PASID_REPLACE,
                Ev.PASID_DETACH: Kind.PASID_DETACH}[Ev(r.type)]
        dtype = domain_type(r.b)
        # a paging domain is a kernel driver's (the DMA API's) or one user space made (an iommufd HWPT)
        extra = {} if r.type == Ev.PASID_DETACH else {
            "error": r.ret or None, "dma_api": bool(r.b & DOMAIN_DMA_API) if dtype == "paging" else None}
        return [row(kind, r.dev, r.pasid, domain=r.a, domain_type=dtype, **extra)]

    def _report_fault(self, row: RowMaker, r: Raw) -> list[Row]:
        flags = r.b & 0xFFFFFFFF
        return [row(Kind.PAGE_REQUEST, r.dev, r.pasid if flags & PAGE_REQUEST_PASID_VALID else None, prg=r.fd,
                    addr=r.a, perm=r.c, last=bool(flags & PAGE_REQUEST_LAST_PAGE), needs_pasid=bool(r.b >> 32))]

    def _kernel_page_response(self, row: RowMaker, r: Raw) -> list[Row]:
        # b: the probe saw the response made inside a write() on a fault-queue fd, i.e. by the process
        if r.c:  # iopf_group_response() on a group no longer pending (6.9+): the kernel sends nothing
            return []
        return [row(Kind.PAGE_RESPONSE, r.dev, r.pasid, prg=r.fd, code=r.ret, by="user" if r.b else "kernel")]

    def _driver_page_response(self, row: RowMaker, r: Raw) -> list[Row]:
        """A driver's page_response op (a: which one, DRIVER_RESPONSE_OPS): the response as sent."""
        out = self._kernel_page_response(row, r)
        if out and 0 <= r.a < len(DRIVER_RESPONSE_OPS):
            how = out[0][R_SOURCE].partition(":")[0]
            out[0][R_SOURCE] = f"{how}:{DRIVER_RESPONSE_OPS[r.a]}" if how != "probe" else DRIVER_RESPONSE_OPS[r.a]
        return out

    # record type -> decoder, from each hook's declaration (probes/hooks.py)
    _handlers: ClassVar[dict[int, Callable[[Decoder, RowMaker, Raw], list[Row]]]]


Decoder._handlers = {int(h.ev): getattr(Decoder, h.decoder) for h in HOOKS if h.ev is not None and h.decoder}


@dataclass(frozen=True, slots=True)
class Raw:
    """One record's fields as Python values, for the low-rate decoders."""

    type: int
    tgid: int
    comm: str
    cmd: int
    fd: int
    ret: int
    a: int
    b: int
    c: int
    dev: str | None  # `in` as text (a device name), when set
    out_text: str
    data: bytes  # `in` then `out`, as many bytes as the probe copied

    @classmethod
    def of(cls, rec: np.void) -> Raw:
        raw_in, raw_out = bytes(rec["in"])[:int(rec["n_in"])], bytes(rec["out"])[:int(rec["n_out"])]
        return cls(int(rec["type"]), int(rec["tgid"]), text(bytes(rec["comm"])), int(rec["cmd"]), int(rec["fd"]),
                   int(rec["ret"]), int(rec["a"]), int(rec["b"]), int(rec["c"]), text(raw_in) or None,
                   text(raw_out), raw_in + raw_out)

    @property
    def pasid(self) -> int | None:
        """`cmd` as the PASID a kernel-function record carries (IOMMU_PASID_INVALID: none)."""
        return None if self.cmd == IOMMU_PASID_INVALID else self.cmd

    @property
    def owner(self) -> str:
        return owner_of(self.tgid, self.comm)


# include/linux/iommu.h domain type bits: __IOMMU_DOMAIN_PAGING 1, _DMA_API 2, _PT 4, _DMA_FQ 8, _SVA 16,
# _PLATFORM 32, _NESTED 64; IOMMU_DOMAIN_BLOCKED is 0. A kernel driver's DMA-API domain (IOMMU_DOMAIN_DMA, _DMA_FQ)
# has _DMA_API; an iommufd paging HWPT is IOMMU_DOMAIN_UNMANAGED, _PAGING alone.
DOMAIN_DMA_API = 0x2


def domain_type(bits: int) -> str:
    if bits & 0x10:
        return "sva"
    if bits & 0x40:
        return "nested"
    if bits & 0x4:
        return "identity"
    if bits & 0x1:
        return "paging"
    return "blocked"


def vtd_page_request(row: RowMaker, dev: str | None, dw0: int, dw1: int) -> Row:
    """A VT-d page request descriptor (drivers/iommu/intel/prq.c, struct page_req_dsc)."""
    pasid = (dw0 >> 32) & 0xFFFFF if dw0 >> 8 & 1 else None
    perm = (dw1 & 1) | (dw1 & 2) | ((dw0 >> 52 & 1) << 2) | ((dw0 >> 53 & 1) << 3)
    return row(Kind.PAGE_REQUEST, dev, pasid, prg=(dw1 >> 3) & 0x1FF, addr=dw1 & ~0xFFF, perm=perm,
               last=bool(dw1 >> 2 & 1))


def vtd_page_response(row: RowMaker, qw0: int, qw1: int) -> Row:
    """A VT-d page group response descriptor (QI_PGRP_* in drivers/iommu/intel/iommu.h). Only the requester
    id names the device, so segment 0000 is assumed."""
    pasid = (qw0 >> 32) & 0xFFFFF if qw0 >> 4 & 1 else None
    code = (qw0 >> 12) & 0xF
    return row(Kind.PAGE_RESPONSE, rid_to_pci((qw0 >> 16) & 0xFFFF), pasid, prg=(qw1 >> 3) & 0x1FF,
               code=VTD_RESPONSE_CODES.get(code, code))

