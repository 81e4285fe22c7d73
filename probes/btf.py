"""A small reader of the kernel's BTF (/sys/kernel/btf/vmlinux): struct member offsets and function names.

Kernel-function probes read struct members through offsets taken from the running kernel's own type
information, so a probe compiled against headers of another release (Debian's 6.1 headers on a 6.18 kernel)
still reads the right bytes. Only what the probes need is decoded: names, structs/unions and their members.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

VMLINUX_BTF = Path("/sys/kernel/btf/vmlinux")
_HEADER = struct.Struct("<HBBIIIII")
_TYPE = struct.Struct("<III")
_MAGIC = 0xEB9F

# BTF kinds (include/uapi/linux/btf.h) and the size of the data that follows each type record.
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FUNC_PROTO, VAR, DATASEC, \
    FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(1, 20)
_QUALIFIERS = (TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG)


def _extra_bytes(kind: int, vlen: int) -> int:
    if kind in (INT, VAR, DECL_TAG):
        return 4
    if kind == ARRAY:
        return 12
    if kind in (STRUCT, UNION, DATASEC, ENUM64):
        return 12 * vlen
    if kind in (ENUM, FUNC_PROTO):
        return 8 * vlen
    return 0


class BtfError(Exception):
    """The BTF blob is missing or not what this reader understands."""


@dataclass(slots=True)
class Btf:
    """Type records by id (1-based), and indexes by name for the kinds the probes ask about."""

    data: bytes
    types: list[tuple[int, int, int, int]] = field(default_factory=list)  # (kind, vlen|kflag<<16, size_or_type, off)
    names: list[str] = field(default_factory=list)
    structs: dict[str, int] = field(default_factory=dict)
    funcs: dict[str, int] = field(default_factory=dict)  # function name -> its FUNC_PROTO type id
    _str_base: int = 0

    @classmethod
    def load(cls, path: str | Path = VMLINUX_BTF) -> Btf:
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise BtfError(f"{path}: {e.strerror or e}") from None
        return cls.parse(data)

    @classmethod
    def parse(cls, data: bytes) -> Btf:
        if len(data) < _HEADER.size:
            raise BtfError("BTF blob shorter than its header")
        magic, _version, _flags, hdr_len, type_off, type_len, str_off, _str_len = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise BtfError(f"not BTF (magic 0x{magic:04x})")
        btf = cls(data)
        btf._str_base = hdr_len + str_off
        btf.types.append((0, 0, 0, 0))  # id 0 is void
        btf.names.append("")
        off, end = hdr_len + type_off, hdr_len + type_off + type_len
        unpack = _TYPE.unpack_from
        while off < end:
            name_off, info, size_or_type = unpack(data, off)
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            name = btf._str(name_off) if name_off else ""
            tid = len(btf.types)
            btf.types.append((kind, vlen | ((info >> 31) << 16), size_or_type, off + _TYPE.size))
            btf.names.append(name)
            if name:
                if kind in (STRUCT, UNION):
                    btf.structs.setdefault(name, tid)
                elif kind == FUNC:
                    btf.funcs[name] = size_or_type
            off += _TYPE.size + _extra_bytes(kind, vlen)
        return btf

    def _str(self, off: int) -> str:
        start = self._str_base + off
        return self.data[start:self.data.index(b"\0", start)].decode("ascii", "replace")

    def _resolve(self, tid: int) -> int:
        while self.types[tid][0] in _QUALIFIERS:
            tid = self.types[tid][2]
        return tid

    def members(self, tid: int) -> list[tuple[str, int, int]]:
        """(name, byte offset, type id) of a struct/union's members; anonymous members keep name ''."""
        kind, vk, _, off = self.types[tid]
        if kind not in (STRUCT, UNION):
            return []
        vlen, kflag = vk & 0xFFFF, vk >> 16
        out = []
        for i in range(vlen):
            name_off, mtype, moff = struct.unpack_from("<III", self.data, off + 12 * i)
            bits = moff & 0xFFFFFF if kflag else moff
            out.append((self._str(name_off) if name_off else "", bits // 8, mtype))
        return out

    def member_offset(self, struct_name: str, path: str) -> int | None:
        """Byte offset of `path` ('kobj.name', 'fault.prm.pasid') inside `struct_name`, looking through
        anonymous unions and structs; None when the kernel has no such member."""
        tid = self.structs.get(struct_name)
        if tid is None:
            return None
        total = 0
        for part in path.split("."):
            found = self._find(self._resolve(tid), part)
            if found is None:
                return None
            delta, tid = found
            total += delta
        return total

    def _find(self, tid: int, name: str) -> tuple[int, int] | None:
        for mname, moff, mtype in self.members(tid):
            if mname == name:
                return moff, mtype
            if not mname:
                inner = self._find(self._resolve(mtype), name)
                if inner is not None:
                    return moff + inner[0], inner[1]
        return None

    def params(self, func: str) -> int | None:
        """How many parameters kernel function `func` takes (fexit programs must list them all)."""
        proto = self.funcs.get(func)
        return None if proto is None else self.types[proto][1] & 0xFFFF

    def param_struct(self, func: str, i: int) -> str | None:
        """The struct that parameter `i` of `func` points to ('device' for a struct device *), or None when
        BTF does not say (no such function or parameter, or not a pointer to a named struct)."""
        proto = self.funcs.get(func)
        if proto is None or i >= self.types[proto][1] & 0xFFFF:
            return None
        _name, ptype = struct.unpack_from("<II", self.data, self.types[proto][3] + 8 * i)
        tid = self._resolve(ptype)
        if self.types[tid][0] != PTR:
            return None
        return self.names[self._resolve(self.types[tid][2])] or None

    def enum_value(self, name: str) -> int | None:
        """The value of enumerator `name` (IOMMU_FAULT_PAGE_REQ, ...), searching every enum."""
        for kind, vk, _, off in self.types:
            if kind == ENUM:
                for i in range(vk & 0xFFFF):
                    name_off, value = struct.unpack_from("<Ii", self.data, off + 8 * i)
                    if self._str(name_off) == name:
                        return value
        return None
