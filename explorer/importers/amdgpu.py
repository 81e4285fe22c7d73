"""amdgpu (and radeon) GPU VM faults: the GPU's own page tables refused an access, in every form the driver printed.

    4.15-4.19 (gmc_v9_0.c)  [gfxhub] VMC page fault (src_id:0 ring:158 vm_id:0 pas_id:0)
                              at page 0x00005b7199707000 from 18
                            VM_L2_PROTECTION_FAULT_STATUS:0x00000000
    5.x-6.6 (gmc_v9/v10/v11) [gfxhub0] retry page fault (src_id:0 ring:0 vmid:3 pasid:32770, for process X pid 1
                            thread X pid 1)
                              in page starting at address 0x000080011e079000 from client 27 (or "from IH client
                            0x1b (UTCL2)", "from client 0x1b (UTCL2)")
                            GCVM_L2_PROTECTION_FAULT_STATUS:0x00341051     (VM_/MMVM_ on other hubs and chips)
                            \t Faulty UTCL2 client ID: TCP (0x8)  \t MORE_FAULTS: 0x1 ... \t RW: 0x1
    6.5 on, multi-die GPUs (GFX 9.4.3+)   cookie node_id 5 fault from die AID1.XCD0
    later 6.x               the fault line ends at the PASID and the process follows on a line of its own, as
                            gmc_v11/v12 printed it (" in process X pid 1 thread Y pid 2)") and then
                            amdgpu_vm_print_task_info() in amdgpu_vm.c (" Process X pid 1 thread Y pid 2"); GFX 9
                            printed " for process X pid 1 thread X pid 1)" after its own split
    gmc_v6-v8 and radeon    GPU fault detected: 146 0x0c80440c [for process X pid 1 thread X pid 1]
                              VM_CONTEXT1_PROTECTION_FAULT_ADDR   0x00001234
                              VM_CONTEXT1_PROTECTION_FAULT_STATUS 0x0C04400C
                            VM fault (0x0c, vmid 6, pasid 32768) at page 4660, read from 'TC0' (0x54433000) (68)

The PASID printed is amdgpu's own: the driver hands PASIDs out of its own IDA (amdgpu_pasid_alloc() in
amdgpu_ids.c), one per GPU VM, so the fault carries pasid_space "amdgpu" and is never read as a PASID of the
IOMMU's global space. FreeBSD's drm-kmod prints the same lines after "drmn0:" instead of the PCI device.
"""

from __future__ import annotations

import re
from typing import Any

from ..events import R_COMM, R_FIELDS, R_PASID, R_PID
from ..pci import normalize_pci
from .core import LogLine, PendingParser, append_raw

SPACE = "amdgpu"
_PREFIX = re.compile(r"(?:(?P<drv>amdgpu|radeon) (?P<dev>[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]):"
                     r"(?: amdgpu:)?|(?P<bsd>drmn\d+):) ?")
_TASK = r"(?P<proc>.*?) pid (?P<pid>\d+) thread (?P<thr>.*?) pid (?P<tid>\d+)"
_V9 = re.compile(r"\[(?P<hub>\w+)\] (?P<what>(?:no-)?retry |VMC )?page fault \(src_id:(?P<src>\d+) ring:(?P<ring>\d+) "
                 rf"vm_?id:(?P<vmid>\d+) pas_?id:(?P<pasid>\d+)(?:, for process {_TASK})?\)")
_V8 = re.compile(rf"GPU fault detected: (?P<src>\d+) 0x(?P<data>[0-9a-fA-F]+)(?: for process {_TASK})?")
_TASK_LINE = re.compile(rf"\s*(?:(?:for|in) process|[Pp]rocess) {_TASK}\)?\s*$")
_AT = re.compile(r"\s*(?:in page starting at address|at page) 0x(?P<addr>[0-9a-fA-F]{1,16}) from "
                 r"(?:IH client |client )?(?P<ih>0x[0-9a-fA-F]+|\d+)(?: \((?P<ihname>\w+)\))?\s*$")
_STATUS = re.compile(r"\s*(?P<reg>\w*VM_L2_PROTECTION_FAULT_STATUS):\s*0x(?P<status>[0-9a-fA-F]{1,8})\s*$")
_DECODE = re.compile(r"\s*(?:Faulty UTCL2 client ID: (?P<client>.+?)|(?P<field>MORE_FAULTS|WALKER_ERROR|"
                     r"PERMISSION_FAULTS|MAPPING_ERROR|RW): 0x(?P<val>[0-9a-fA-F]+))\s*$")
_V8_REG = re.compile(r"\s*VM_CONTEXT1_PROTECTION_FAULT_(?P<reg>ADDR|STATUS)\s+0x(?P<val>[0-9a-fA-F]{1,8})\s*$")
_V8_DECODE = re.compile(r"\s*VM fault \(0x(?P<prot>[0-9a-fA-F]+), vmid (?P<vmid>\d+)(?:, pasid (?P<pasid>\d+))?\) "
                        r"at page (?P<page>\d+), (?P<rw>read|write) from '(?P<client>[^']*)'")
_COOKIE = re.compile(r"\s*cookie node_id (?P<node>\d+) fault from die (?P<die>\S+)\s*$")  # GFX 9.4.3 on (MI300)
_SRIOV = re.compile(r"\s*Can't decode VM fault info here on SRIOV VF")
VEGA_RW = 1 << 18  # VM_L2_PROTECTION_FAULT_STATUS.RW on gfxhub/mmhub v1.0 (vega10_enum / *_sh_mask.h)
GPU_PAGE_SHIFT = 12  # AMDGPU_GPU_PAGE_SHIFT: gmc v6-v8 print the fault address as a 4 KiB page number


class AmdGpu(PendingParser):
    vendor = "amdgpu"
    RULES = (("page fault (src_id", _V9, "_v9"), ("GPU fault detected", _V8, "_v8"))

    def __init__(self, sink):  # type: ignore[no-untyped-def]
        super().__init__(sink)
        self._who: str | None = None  # the device prefix the record's lines carry
        self._facts: dict[str, Any] = {}

    def _start(self, line: LogLine, m: re.Match[str], facts: dict[str, Any]) -> bool:
        p = _PREFIX.match(line.msg)
        if p is None:
            return False
        device = normalize_pci(p["dev"]) if p["dev"] else p["bsd"]
        printed = m.groupdict().get("pasid")  # gmc v6-v8 print it on the decode line instead
        pasid = int(printed) or None if printed else None  # 0: the kernel's own VM, no PASID
        row = self.sink.fault_row(line, device, pasid, vendor=self.vendor, access="unknown",
                                  driver=p["drv"] or "amdgpu", **facts)
        self._who = p.group(0).strip()
        self._facts = {}
        self.hold(row)
        self.greedy = True
        self._task(row, m)
        self.sink.device(device, p["drv"] or "amdgpu")
        return True

    def _v9(self, line: LogLine, m: re.Match[str]) -> bool:
        what = (m["what"] or "").strip()
        return self._start(line, m, {"vmid": int(m["vmid"]), "hub": m["hub"],
                                     "kind": f"{what} page fault" if what and what != "VMC" else "page fault"})

    def _v8(self, line: LogLine, m: re.Match[str]) -> bool:
        return self._start(line, m, {"hub": None, "kind": "VM fault"})

    def _task(self, row: list[Any], m: re.Match[str]) -> None:
        if m["pid"] is not None:
            row[R_PID], row[R_COMM] = int(m["pid"]), m["proc"].strip() or None
            thread = m["thr"].strip()
            row[R_FIELDS]["thread"] = f"{thread} ({m['tid']})" if thread else m["tid"]

    def more(self, line: LogLine) -> bool:
        row = self.pending
        assert row is not None
        p = _PREFIX.match(line.msg)
        if p is None or p.group(0).strip() != self._who:
            return False
        rest = line.msg[p.end():]
        fields, facts = row[R_FIELDS], self._facts
        if (m := _AT.match(rest)) is not None:
            fields["addr"] = int(m["addr"], 16)
            facts["ih"] = m["ihname"] or m["ih"]
        elif (m := _STATUS.match(rest)) is not None:
            facts["status"], facts["reg"] = int(m["status"], 16), m["reg"]
        elif (m := _DECODE.match(rest)) is not None:
            if m["client"] is not None:
                fields["client"] = m["client"].strip()
            else:
                facts[m["field"]] = int(m["val"], 16)
        elif (m := _TASK_LINE.match(rest)) is not None:
            self._task(row, m)
        elif (m := _V8_REG.match(rest)) is not None:
            facts[m["reg"].lower()] = int(m["val"], 16)
        elif (m := _V8_DECODE.match(rest)) is not None:
            fields.update(vmid=int(m["vmid"]), client=m["client"].strip() or None, access=m["rw"],
                          addr=int(m["page"]) << GPU_PAGE_SHIFT)
            if m["pasid"] and int(m["pasid"]):
                row[R_PASID] = int(m["pasid"])
        elif (m := _COOKIE.match(rest)) is not None:
            facts["die"] = m["die"]
        elif _SRIOV.match(rest) is None:
            return False
        append_raw(row, line)
        return True

    def close(self) -> None:
        row = self.pending
        if row is not None:
            self._finish(row[R_FIELDS], row[R_PASID])
        self.greedy = False
        super().close()

    def _finish(self, fields: dict[str, Any], pasid: int | None) -> None:
        """Access, code and the reason in words, once every line of the record is in."""
        facts = self._facts
        hub, kind = fields.pop("hub", None), fields.pop("kind", "page fault")
        status = facts.get("status")
        if "RW" in facts:
            fields["access"] = "write" if facts["RW"] else "read"
        elif facts.get("reg") == "VM_L2_PROTECTION_FAULT_STATUS" and status:
            fields["access"] = "write" if status & VEGA_RW else "read"
        if "addr" not in fields and "addr" in facts:
            fields["addr"] = facts["addr"] << GPU_PAGE_SHIFT
        if status is not None:
            fields["code"] = status
        parts = [f"[{hub}] {kind}" if hub else kind]
        if fields.get("vmid") is not None:
            parts.append(f"GPU VM {fields['vmid']}")
        if "die" in facts:
            parts.append(f"die {facts['die']}")
        if fields.get("client") or facts.get("ih"):
            parts.append(f"client {fields.get('client') or facts['ih']}")
        why = ", ".join(f"{k} {facts[k]:#x}" for k in ("PERMISSION_FAULTS", "MAPPING_ERROR", "WALKER_ERROR")
                        if facts.get(k))
        if facts.get("reg") and not facts.get("status"):
            why = why or "status register already cleared (0): the driver read it after another fault"
        reason = (f"{', '.join(parts)}: the GPU's own page tables (amdgpu VM) have no valid mapping with the "
                  "access needed at this address - a GPU job touched memory its process never mapped or "
                  "already freed; the IOMMU is not involved")
        if why:
            reason += f" [{why}]"
        if facts.get("MORE_FAULTS"):
            reason += "; more faults followed that the hardware did not record"
        if pasid is not None:
            reason += (f". PASID {pasid} is amdgpu's own number for this GPU VM (amdgpu_pasid_alloc(), "
                       "amdgpu_ids.c), not a PASID of the IOMMU's global space")
            fields["pasid_space"] = SPACE
        fields["reason"] = reason
