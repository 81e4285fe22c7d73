"""The programs for tracepoints this kernel lacks (Intel VT-d's, the vendor-tree iommu:dev_fault/dev_page_response)
compile and pass the verifier against those tracepoints' formats as the kernel sources define them.

bcc builds a tracepoint program's argument struct from tracefs' format file, so the test runs the compiler in a
private mount namespace whose tracefs is a copy of this one plus the missing formats."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.live, pytest.mark.usefixtures("live_host")]

STR = "__data_loc char[]"
# (type, name, size) as TRACE_EVENT declares them: drivers/iommu/intel/trace.h (6.x), include/trace/events/iommu.h
# (5.x, SVA era).
FORMATS = {
    "intel_iommu/prq_report": [("u64", "dw0", 8), ("u64", "dw1", 8), ("u64", "dw2", 8), ("u64", "dw3", 8),
                               ("unsigned long", "seq", 8), (STR, "iommu", 4), (STR, "dev", 4), (STR, "buff", 4)],
    "intel_iommu/qi_submit": [("u64", "qw0", 8), ("u64", "qw1", 8), ("u64", "qw2", 8), ("u64", "qw3", 8),
                              (STR, "iommu", 4)],
    "iommu/dev_fault": [(STR, "device", 4), ("int", "type", 4), ("int", "reason", 4), ("u64", "addr", 8),
                        ("u64", "fetch_addr", 8), ("u32", "pasid", 4), ("u32", "grpid", 4), ("u32", "flags", 4),
                        ("u32", "prot", 4)],
    "iommu/dev_page_response": [(STR, "device", 4), ("int", "code", 4), ("u32", "pasid", 4), ("u32", "grpid", 4)],
}
COMMON = ("\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
          "\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n"
          "\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n"
          "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n")


def format_text(event: str, fields: list[tuple[str, str, int]]) -> str:
    lines, off = [], 8
    for ctype, name, size in fields:
        off = (off + size - 1) // size * size
        signed = int(ctype in ("int", "long"))
        lines.append(f"\tfield:{ctype} {name};\toffset:{off};\tsize:{size};\tsigned:{signed};\n")
        off += size
    return f"name: {event}\nID: 9999\nformat:\n{COMMON}{''.join(lines)}\nprint fmt: \"\"\n"


SCRIPT = r"""
import shutil, subprocess, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
root, fake = Path(sys.argv[1]), Path(sys.argv[2])
from probes import loader, record
from probes.capability import HostFacts, plan
from probes.hooks import HOOKS
real = Path("/sys/kernel/tracing")
for hook in HOOKS:
    if not hook.function and (real / "events" / hook.system / hook.event / "format").exists():
        dst = fake / "events" / hook.system / hook.event
        dst.mkdir(parents=True, exist_ok=True)
        shutil.copy(real / "events" / hook.system / hook.event / "format", dst / "format")
for mount_point in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"):
    if Path(mount_point).is_dir():
        subprocess.run(["mount", "--bind", str(fake), mount_point], check=True)
facts = HostFacts.gather()
verdicts = [v for v in plan(facts) if not v.hook.function]
assert all(v.planned for v in verdicts), [(v.hook.name, v.status, v.reason) for v in verdicts if not v.planned]
bcc = loader.import_bcc()
class CompileOnly(bcc.BPF):
    def _trace_autoload(self):
        pass
b = CompileOnly(text=loader.source(verdicts).encode(), cflags=loader.cflags(verdicts, 1 << 16, facts))
for name in ("tracepoint__intel_iommu__prq_report", "tracepoint__intel_iommu__qi_submit",
             "tracepoint__iommu__dev_fault", "tracepoint__iommu__dev_page_response"):
    b.load_func(name.encode(), bcc.BPF.TRACEPOINT)
b.cleanup()
print("verified")
"""


def test_vendor_and_sva_era_tracepoint_programs_compile_and_verify(tmp_path: Path) -> None:
    fake = tmp_path / "tracefs"
    for path, fields in FORMATS.items():
        (fake / "events" / path).mkdir(parents=True)
        (fake / "events" / path / "format").write_text(format_text(path.split("/")[1], fields))
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c", SCRIPT,
                             str(root), str(fake)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "verified" in result.stdout, result.stderr[-3000:]
