"""The capture as a live source, in this process: fault-queue I/O through the real syscall probes, the kernel
function programs against this kernel's verifier, and the errors for hosts that cannot capture."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from explorer.errors import CaptureError
from explorer.index import RecordingIndex
from explorer.recording import Recording
from explorer.uapi import command_number
from probes import loader, record
from probes.btf import Btf
from probes.capability import HostFacts
from probes.capture import Capture, CaptureOptions, host_plan
from probes.hooks import DRIVER_RESPONSE_OPS, HOOKS
from probes.kernel_funcs import OFFSETS, OPTIONAL, offset
from probes.recorder import RecordingTee
from probes.uapi_decode import encode_args

from .test_decode import pgfault

pytestmark = [pytest.mark.live, pytest.mark.usefixtures("live_host")]
# Argument counts of the kernel functions this kernel may not have (include/linux/iommu.h, ioasid.h, sched/mm.h).
SIGNATURE_ARGS = {"iommu_alloc_global_pasid": 1, "iommu_free_global_pasid": 1, "iommu_sva_bind_device": 2,
                  "iommu_sva_unbind_device": 1, "iommu_attach_device_pasid": 4, "iommu_detach_device_pasid": 3,
                  "iommu_replace_device_pasid": 4, "iommu_report_device_fault": 2, "iopf_group_response": 2,
                  "iommu_page_response": 2, "mm_pasid_drop": 1, "ioasid_alloc": 4, "ioasid_free": 1,
                  "ioasid_put": 1, **dict.fromkeys(DRIVER_RESPONSE_OPS, 3)}


@pytest.fixture(scope="module")
def capture() -> Capture:
    cap = Capture(CaptureOptions(pid=os.getpid(), ring_bytes=1 << 20))
    yield cap
    cap.close()


def register_fault_fd(cap: Capture, fd: int, fault_id: int) -> None:
    """What a successful IOMMU_FAULT_QUEUE_ALLOC makes the probe do (this host has no /dev/iommu to succeed)."""
    table = cap.loaded.table("fault_fds")
    table[table.Key(os.getpid(), fd)] = ctypes.c_uint(fault_id)
    config = cap.loaded.table("config")
    config[ctypes.c_int(1)] = ctypes.c_ulonglong(1)


def test_fault_queue_reads_and_response_writes_go_through_the_syscall_probes(capture: Capture) -> None:
    faults_r, faults_w = os.pipe()
    answers_r, answers_w = os.pipe()
    register_fault_fd(capture, faults_r, 9)
    register_fault_fd(capture, answers_w, 9)
    faults = b"".join(pgfault(2, 7, prg, 100 + prg) for prg in range(5))  # 200 bytes: three records' worth
    os.write(faults_w, faults)
    assert os.read(faults_r, 4096) == faults
    os.write(answers_w, struct.pack("<II", 102, 0) + struct.pack("<II", 104, 1))
    os.read(answers_r, 4096)
    os.close(faults_r)  # sys_enter_close forgets the fd
    rows = capture.poll(0.1) + capture.poll(0.1)
    requests = [r for r in rows if r[1] == "page_request"]
    responses = [r for r in rows if r[1] == "page_response"]
    me = f"iommufd:{os.getpid()}/dev2"
    assert [(r[2], r[3], r[8]["prg"]) for r in requests] == [(me, 7, prg) for prg in range(5)]
    assert [(r[2], r[3], r[8]["prg"], r[8]["code"], r[8]["by"]) for r in responses] == [
        (me, 7, 2, 0, "user"), (me, 7, 4, 1, "user")]
    assert all(r[7] == "syscalls:sys_exit_read" for r in requests)
    table = capture.loaded.table("fault_fds")
    assert table.Key(os.getpid(), faults_r) not in table and table.Key(os.getpid(), answers_w) in table
    idx = RecordingIndex(capture.header)
    idx.add_rows(rows)
    assert sorted(g.prg for g in idx.sim.state.groups.values()) == [0, 1, 3]  # 2 and 4 were answered
    assert capture.status().startswith("live · ") and "lost 0" in capture.status()
    os.close(faults_w)
    os.close(answers_r)
    os.close(answers_w)


FUNCTIONS = [h for h in HOOKS if h.function]


def _kernel_funcs_text_and_flags(fentry: bool) -> tuple[str, list[str]]:
    """Every kernel-function probe, with BTF offsets where this kernel has the members and stand-ins where it
    does not (the point is the verifier's view of the code, not the values read)."""
    btf = Btf.load()
    flags = [f"-I{loader.PROBES_DIR}", "-DRINGBUF_PAGES=16", "-DWAKEUP_EVERY=1", "-DFAULT_PAGE_REQ=1",
             "-DNEEDS_PASID_FLAG=4", "-DHAVE_MM_PASID", "-DOFF_MM_PASID=8", *record.cflags()]
    if fentry:
        flags.append("-DUSE_FENTRY")
    for hook in HOOKS:
        if hook.function:
            flags.append(f"-DHOOK_{hook.name}")
            flags.append(f"-DNARGS_{hook.name}={btf.params(hook.name) or SIGNATURE_ARGS[hook.name]}")
    flags += [f"-DOFF_{name}={64 if offset(btf, name) is None else offset(btf, name)}" for name in OFFSETS]
    flags += [f"-DOFF_{name}=64" for optional in OPTIONAL.values() for name in optional]
    text = "\n".join((loader.PROBES_DIR / n).read_text() for n in ("common.bpf.c", loader.KERNEL_FUNCS))
    return text, list(dict.fromkeys(flags))


def test_kernel_function_probes_pass_this_kernels_verifier_as_kprobes() -> None:
    bcc = loader.import_bcc()
    text, flags = _kernel_funcs_text_and_flags(fentry=False)
    b = bcc.BPF(text=text.encode(), cflags=flags)
    try:
        for hook in FUNCTIONS:
            b.load_func(f"kp_{hook.name}".encode(), bcc.BPF.KPROBE)
            if hook.returns:
                b.load_func(f"kr_{hook.name}".encode(), bcc.BPF.KPROBE)
    finally:
        b.cleanup()


def test_kernel_function_probes_compile_as_fentry_programs() -> None:
    bcc = loader.import_bcc()

    class CompileOnly(bcc.BPF):  # type: ignore[misc, name-defined]
        def _trace_autoload(self) -> None:  # loading fentry needs what the host may refuse (lockdown)
            pass

    text, flags = _kernel_funcs_text_and_flags(fentry=True)
    b = CompileOnly(text=text.encode(), cflags=flags)
    try:
        lib = bcc.libbcc.lib
        names = {lib.bpf_function_name(b.module, i).decode() for i in range(lib.bpf_num_functions(b.module))}
    finally:
        b.cleanup()
    for hook in FUNCTIONS:
        assert (f"kretfunc__{hook.name}" if hook.returns else f"kfunc__{hook.name}") in names


# mm_key of the caller's own mm each time the target process calls getppid(), by mm pointer
MM_KEYS_OF_TARGET = """
BPF_HASH(keys_seen, u64, u64, 16);
TRACEPOINT_PROBE(syscalls, sys_enter_getppid)
{
    if ((bpf_get_current_pid_tgid() >> 32) != TARGET)
        return 0;
    u64 mm = kread((u64)bpf_get_current_task() + OFF_TASK_MM);
    u64 key = mm_key(mm);
    keys_seen.update(&mm, &key);
    return 0;
}
"""


def test_an_execd_process_s_new_mm_is_not_named_as_its_old_one() -> None:
    """exec_mmap() (fs/exec.c) gives the process a new mm while the old one may live on, held by a bind of an SVA
    fd kept across the exec, with its PASID (freed only by mm_pasid_drop() in __mmdrop(), kernel/fork.c 5.18+):
    the capture must not name both by the tgid, or the new mm's PASID reads as a second PASID of the old mm."""
    bcc = loader.import_bcc()
    child = subprocess.Popen([sys.executable, "-c", "import os, sys; sys.stdin.readline(); os.getppid(); "
                              "os.execv(sys.executable, [sys.executable, '-c', 'import os; os.getppid()'])"],
                             stdin=subprocess.PIPE, text=True)
    text, flags = _kernel_funcs_text_and_flags(fentry=False)
    b = bcc.BPF(text=(text + MM_KEYS_OF_TARGET).encode(), cflags=[*flags, f"-DTARGET={child.pid}"])
    try:
        child.communicate("go\n", timeout=60)
        named = {k.value: v.value for k, v in b[b"keys_seen"].items()}
    finally:
        b.cleanup()
    assert child.returncode == 0 and len(named) == 2  # the mm before the exec and the mm after it
    before, after = sorted(named.items(), key=lambda kv: kv[1] != child.pid)
    assert before[1] == child.pid  # the first mm the capture saw: named by the process
    assert after[1] == after[0] != before[0]  # the exec's: by its own pointer, not as the first


def test_a_host_without_tracefs_or_hooks_is_refused_with_the_reason(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(CaptureError, match="tracefs is not mounted"):
        Capture(CaptureOptions(tracefs_dirs=(tmp_path / "nowhere",)))
    (tmp_path / "events").mkdir()  # a tracefs with no events: a kernel without any of the hooks ...
    gather = HostFacts.gather

    def without_functions(dirs: tuple[Path, ...]) -> HostFacts:
        facts = gather(dirs)
        facts.symbols = frozenset()  # ... and none of the kernel functions either, whatever this host has
        return facts

    monkeypatch.setattr(HostFacts, "gather", staticmethod(without_functions))
    assert not any(v.planned for v in host_plan(HostFacts.gather((tmp_path,))))
    with pytest.raises(CaptureError, match="offers none of the hooks"):
        Capture(CaptureOptions(tracefs_dirs=(tmp_path,)))


def test_a_recording_tee_writes_exactly_the_rows_it_hands_out(tmp_path: Path) -> None:
    """What `live -o` does under the UI: rows polled for the screen are the rows in the recording."""
    tee = RecordingTee(Capture(CaptureOptions(pid=os.getpid(), ring_bytes=1 << 16)), tmp_path / "tee.pasidrec")
    fd = os.open("/dev/null", os.O_RDONLY)
    buf = bytearray(encode_args("IOMMU_IOAS_ALLOC", {}))
    for _ in range(50):
        with contextlib.suppress(OSError):
            fcntl.ioctl(fd, command_number("IOMMU_IOAS_ALLOC"), buf)
    os.close(fd)
    shown = []
    deadline = time.monotonic() + 5
    while len(shown) < 50 and time.monotonic() < deadline:
        shown += tee.poll(0.05)
    assert len(shown) == 50 and "recording" in tee.status()
    extra = tee.close()
    r = Recording(tmp_path / "tee.pasidrec")
    assert r.complete and r.footer["end_reason"] == "complete" and extra["lost"] == 0
    assert list(r.iter_rows()) == [[*row[:8], row[8]] for row in shown]
    assert [c["count"] for c in r.footer["kernel_counts"] if c["type"] == "ioctl"] == [50]
