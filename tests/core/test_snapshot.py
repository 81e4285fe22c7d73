"""Snapshots of the kernel's own PASID state: PCI config space decoded as lspci -vvv does, the Intel IOMMU debugfs
as drivers/iommu/intel/debugfs.c prints it, their storage in recordings, and where they disagree with the model.

snapshot_fixtures/lab-6.12/ is real: a 6.12 kernel's Intel IOMMU debugfs and config space, read in a lab VM with a
scalable-mode VT-d; so are lab-6.12-pgtables/ and lab-7.3-pgtables/, each device's page table and the
invalidation latency from 6.12.118 and 7.3.4 in such a VM (trimmed where their READMEs say). The other Intel dumps
under snapshot_fixtures/ are constructed from debugfs.c's seq_printf formats (5.15-6.12: root_tbl_walk()/
print_tbl_walk(), invalidation_queue_show()) to hold what that VM could not (a PASID other than 0, first-stage); no
public report we found posts one. The AMD dumps are the examples in the kernel's own
Documentation/ABI/testing/debugfs-amd-iommu (7.3.4), written by the driver's author, or constructed from
drivers/iommu/amd/debugfs.c's formats where said. The PASID and PRI capability bytes are built from the PCIe base
specification's layouts (as pci_regs.h names them); this host's own /sys/bus/pci/devices/*/config is the real
config space the real-machine test reads."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from snapshot_host import DEV, config_space, host, recording, snapshots

from explorer.cli.main import main
from explorer.index import RecordingIndex
from explorer.reconcile import reconcile
from explorer.recording import Recording
from explorer.simulator import SimState
from explorer.snapshot import pci_caps, stored, take
from explorer.summary import check_report

ROOT = Path(__file__).resolve().parents[2]


def test_pasid_pri_and_ats_capabilities_decode_as_lspci_shows_them() -> None:
    fn = pci_caps.decode(config_space(pri_status=0x8101))
    assert fn["pasid"] == {"width": 20, "exec": True, "priv": True, "enabled": True, "exec_enabled": False,
                           "priv_enabled": False}
    assert fn["pri"] | {} == {"enabled": True, "status": 0x8101, "response_failure": True,
                              "unexpected_prg_index": False, "stopped": True, "prg_response_pasid_required": True,
                              "outstanding_capacity": 512, "outstanding_allocation": 256}
    assert fn["ats"] == {"enabled": True, "stu": 0, "invalidate_queue_depth": 32, "page_aligned_request": True}


@pytest.mark.parametrize("width", [20, 31])
def test_a_pasid_width_beyond_the_pcie_specification_is_remarked(tmp_path: Path, width: int) -> None:
    """Max PASID Width is 5 bits in the PASID Capability register, but the PCIe base specification reserves values
    above 20, and the kernel's PASID space is 20 bits (PASID_BITS): a 31 was once shown without remark."""
    root = host(tmp_path)
    (root / "sys/bus/pci/devices" / DEV / "config").write_bytes(config_space(width=width))
    r = subprocess.run([sys.executable, "-m", "explorer.cli.main", "snapshot", "--root", str(root)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and f"PASID {width} bits" in r.stdout, r.stderr
    assert ("beyond the 20 the PCIe specification allows" in r.stdout) == (width > 20)


@pytest.mark.parametrize("config, why", [
    (b"\x86\x80" * 10, "fewer than the 64"),
    (config_space()[:0x100] + struct.pack("<I", 0x0F | 1 << 16 | 0x100 << 20) + bytes(4092 - 0x100),
     "loops"),
])
def test_malformed_config_space_is_one_line_in_the_snapshot(tmp_path: Path, config: bytes, why: str) -> None:
    dev = tmp_path / "sys/bus/pci/devices" / DEV
    dev.mkdir(parents=True)
    (dev / "config").write_bytes(config)
    snap = take(tmp_path)
    assert why in snap["unreadable"][f"pci {DEV}"] and snap["pci"] == {}


def test_a_scalable_mode_dump_gives_each_devices_pasid_table_and_what_was_not_read(tmp_path: Path) -> None:
    snap = take(host(tmp_path))
    intel = snap["intel"]
    assert intel["iommus"] == {"dmar0": {"enabled": True, "scalable": True},
                               "dmar1": {"enabled": False, "scalable": False}}
    # PGTT is val[0] bits 8:6: 0x...099 second-stage (the RID_PASID entry), 0x...059 first-stage (an SVA PASID)
    assert intel["devices"][DEV] == {"iommu": "dmar0", "pasids": [
        {"pasid": 0, "pgtt": "second-stage", "domain_id": 2}, {"pasid": 5, "pgtt": "first-stage", "domain_id": 3}]}
    assert intel["invalidation_queue"] == {"dmar0": {"head": 20, "tail": 22}}
    assert intel["paging_pasids"] == {DEV: [0x1F]}
    assert sorted(intel["devices"]) == ["0000:00:0a.0", "0001:00:02.0"]  # the dump's 00:02.0, named by sysfs
    assert snap["pci"][DEV]["pasid"]["width"] == 20
    assert "no such driver" in snap["unreadable"]["amd iommu debugfs"]
    assert "intel dmar_perf_latency" in snap["unreadable"]


def test_a_garbled_dump_is_one_line_and_the_cli_never_shows_a_traceback(tmp_path: Path) -> None:
    root = host(tmp_path, "IOMMU dmar0: Root Table Address: 0x1\n\x1b[31mnot a table line\n")
    snap = take(root)
    assert snap["unreadable"]["intel dmar_translation_struct"].endswith(
        "line 2: not a line of dmar_translation_struct: '\\x1b[31mnot a table line'")
    r = subprocess.run([sys.executable, "-m", "explorer.cli.main", "snapshot", "--root", str(root)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "Traceback" not in r.stderr and "\x1b" not in r.stdout
    assert "not read: intel dmar_translation_struct" in r.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="config space past 64 bytes is root's to read")
def test_this_machines_own_config_space_reads_as_root(tmp_path: Path) -> None:
    """The real thing: every function under /sys/bus/pci/devices is either decoded or said to be unreadable, and
    the vendor IDs decoded from config space are the ones sysfs states."""
    out = tmp_path / "host.json"
    r = subprocess.run([sys.executable, "-m", "explorer.cli.main", "snapshot", "-o", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    snap = json.loads(out.read_text())
    devices = sorted(p.name for p in Path("/sys/bus/pci/devices").iterdir())
    assert devices, "this machine has PCI functions"
    for name in devices:
        config = (Path("/sys/bus/pci/devices") / name / "config").read_bytes()
        fn = pci_caps.decode(config)
        assert fn["vendor"] == int((Path("/sys/bus/pci/devices") / name / "vendor").read_text(), 16)
        assert (name in snap["pci"]) == bool(fn.keys() & {"pasid", "pri", "ats"})
    conventional = sum(len((Path("/sys/bus/pci/devices") / n / "config").read_bytes()) <= 256 for n in devices)
    assert ("pci conventional functions" in snap["unreadable"]) == bool(conventional)
    assert "not root" not in json.dumps(snap["unreadable"])


def test_check_says_where_the_kernels_pasid_table_and_the_model_disagree(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = recording(tmp_path, *snapshots(tmp_path))
    with Recording(path) as rec:
        report = check_report(path, RecordingIndex.build(rec))
    got = [(d["rule"], d["pasid"]) for d in report["kernel_state"]["disagreements"]]
    # PASID 5 was in the table before the recording began: no finding at the start; 7 is attached in the model
    # but absent from the table at the end; 9 appeared unseen; Response Failure came with no failure response.
    assert got == [("table_missing", 7), ("table_unexplained", 9), ("pri_unexplained", None)]
    # `check` keeps the model's checkpoints for a recording with snapshots only, and seeks them here
    assert main(["check", str(path), "--json"]) == 1
    cli = json.loads(capsys.readouterr().out)["kernel_state"]["disagreements"]
    assert [(d["rule"], d["pasid"]) for d in cli] == got


def test_recordings_without_snapshots_read_as_before() -> None:
    path = ROOT / "recordings" / "01-two-processes-one-device.pasidrec"
    with Recording(path) as rec:
        assert "kernel_state" not in check_report(path, RecordingIndex.build(rec))


def test_check_exits_1_on_a_disagreement_and_prints_no_control_sequence_from_the_recording(tmp_path: Path) -> None:
    start, end = snapshots(tmp_path)
    hostile = "0000:00:0b.0\x1b]0;owned\x07"
    end["intel"]["devices"][hostile] = {"iommu": "dmar0", "pasids": [{"pasid": 3, "pgtt": "first-stage",
                                                                       "domain_id": 1}]}
    path = recording(tmp_path, start, end)
    r = subprocess.run([sys.executable, "-m", "explorer.cli.main", "check", str(path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    assert "table_missing: the model holds PASID 7 attached to 0000:00:0a.0" in r.stdout
    assert "0000:00:0b.0\\x1b]0;owned\\x07's PASID table" in r.stdout and "\x1b" not in r.stdout


AMD_DOC = Path(__file__).parent / "snapshot_fixtures/amd-abi-doc"


def test_the_amd_debugfs_gives_each_command_buffers_head_and_tail_the_device_table_entry_and_never_a_traceback(
        tmp_path: Path) -> None:
    """drivers/iommu/amd/debugfs.c (6.17 on, as 7.3.4 has it): iommu_cmdbuf_show() and dump_dte(), read from the
    examples of the kernel's own ABI documentation (amd-abi-doc/README); a garbled cmdbuf is one line."""
    amd = tmp_path / "sys/kernel/debug/iommu/amd"
    (amd / "iommu00").mkdir(parents=True)
    (amd / "iommu01").mkdir()
    shutil.copy(AMD_DOC / "cmdbuf", amd / "iommu00")
    shutil.copy(AMD_DOC / "devtbl", amd)
    (amd / "iommu01" / "cmdbuf").write_bytes(b"\xff\xfe garbage")
    snap = take(tmp_path)
    assert snap["amd"] == {"command_buffers": {"iommu00": {"head": 339, "tail": 339}}, "devtbl": {
        "device": "0000:01:00.0", "iommu": "iommu3",
        "qwords": [0x6000000114D7B603, 0x38, 0x20000001373B8013, 0], "valid": True, "translation": True, "mode": 3,
        "ppr": False, "giov": False, "gv": False, "glx": 0, "domain_id": 0x38}}
    assert "no such driver" in snap["unreadable"]["intel iommu debugfs"]
    assert snap["unreadable"]["amd iommu01/cmdbuf"].endswith("cmdbuf: line 1: not a line debugfs.c prints: "
                                                             "'\ufffd\ufffd garbage'")
    r = subprocess.run([sys.executable, "-m", "explorer.cli.main", "snapshot", "--root", str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert "0000:01:00.0 AMD device table entry on iommu3: domain 56, 3-level page table, PASIDs off (GV clear)" \
        in r.stdout, r.stdout + r.stderr
    (amd / "devtbl").write_text("Enter a valid device ID to 'devid' file\n")  # iommu_devtbl_show(), none chosen
    assert take(tmp_path)["amd"]["devtbl"] == {"device": None, "why": "Enter a valid device ID to 'devid' file"}


def test_a_pasid_held_on_an_amd_device_whose_entry_has_gv_clear_is_a_finding(tmp_path: Path) -> None:
    from explorer.simulator.state import Attachment

    amd = tmp_path / "sys/kernel/debug/iommu/amd"
    amd.mkdir(parents=True)
    shutil.copy(AMD_DOC / "devtbl", amd)
    snap = take(tmp_path) | {"taken_ns": 10, "done_ns": 10}
    st = SimState()
    st.attachments[("0000:01:00.0", 4)] = Attachment(1, "sva", 0, 0)
    st.attachments[("0000:01:00.0", 0)] = Attachment(2, "paging", 0, 0)  # the RID's own domain: no GCR3 needed
    st.attachments[("0000:02:00.0", 5)] = Attachment(1, "sva", 0, 0)  # another device: its entry is not shown
    got = [(d.rule, d.device, d.pasid) for d in reconcile([snap], lambda _ts: st, lambda: [])]
    assert got == [("dte_no_gv", "0000:01:00.0", 4)]
    gv = {**snap["amd"]["devtbl"], "gv": True}
    assert reconcile([{**snap, "amd": {"devtbl": gv}}], lambda _ts: st, lambda: []) == []


def test_snapshots_of_the_wrong_shape_are_named_and_left_out(tmp_path: Path) -> None:
    start, _ = snapshots(tmp_path)
    path = recording(tmp_path, start, {"taken_ns": "late", "pci": {}})  # an end snapshot a stranger made up
    with Recording(path) as rec:
        report = check_report(path, RecordingIndex.build(rec))
    assert report["kernel_state"]["snapshots"] == [50]
    assert report["kernel_state"]["unusable"] == ["footer key snapshots[0]: a snapshot's taken_ns must be an integer"]


def test_info_lists_each_snapshot_a_recording_keeps(tmp_path: Path) -> None:
    path = recording(tmp_path, *snapshots(tmp_path))
    r = subprocess.run([sys.executable, "-m", "explorer.cli.main", "info", str(path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    shown = [line.strip() for line in r.stdout.splitlines() if "kernel snapshot" in line]
    assert shown[0].startswith("kernel snapshot at 50 ns before the first event: 1 functions with PASID, PRI or "
                               "ATS, PASID tables of 2 devices; not read: amd iommu debugfs")
    assert shown[1].startswith("kernel snapshot at +200 ns:") and len(shown) == 2


def test_a_real_kernels_debugfs_and_config_space_behind_vt_d_read_whole_and_raise_no_false_alarm(
        tmp_path: Path) -> None:
    """snapshot_fixtures/lab-6.12/ holds what a lab VM's kernel (6.12.118, QEMU's scalable-mode VT-d) printed in its
    Intel IOMMU debugfs and its config space (see the README there): every device has its RID_PASID entry (PASID
    0, second-stage) and nothing else; ATS is enabled on the two virtio functions. Set beside a model with no
    PASID, nothing disagrees."""
    real = Path(__file__).parent / "snapshot_fixtures/lab-6.12"
    dev = tmp_path / "sys/bus/pci/devices/0000:01:00.0"
    dev.mkdir(parents=True)
    (dev / "config").write_bytes((real / "config-0000:01:00.0").read_bytes())
    (tmp_path / "sys/class/iommu/dmar0").mkdir(parents=True)
    intel = tmp_path / "sys/kernel/debug/iommu/intel"
    intel.mkdir(parents=True)
    for name in ("dmar_translation_struct", "invalidation_queue", "dmar_perf_latency"):
        (intel / name).write_bytes((real / name).read_bytes())
    snap = take(tmp_path)
    assert snap["pci"]["0000:01:00.0"] == {"vendor": 0x1AF4, "device_id": 0x1049, "class": 0x000200, "ats": {
        "enabled": True, "stu": 0, "invalidate_queue_depth": 32, "page_aligned_request": True}}
    devices = snap["intel"]["devices"]
    assert len(devices) == 8 and snap["intel"]["iommus"] == {"dmar0": {"enabled": True, "scalable": True}}
    assert devices["0000:01:00.0"] == {"iommu": "dmar0", "pasids": [{"pasid": 0, "pgtt": "second-stage",
                                                                       "domain_id": 6}]}
    assert snap["intel"]["invalidation_queue"] == {"dmar0": {"head": 75, "tail": 75}}
    assert snap["intel"]["latency"] == {"dmar0": {}}  # the kernel times no invalidation until root asks
    assert snap["unreadable"]["amd iommu debugfs"].startswith("no such driver: no AMD IOMMU on this host")
    later = {**json.loads(json.dumps(snap)), "taken_ns": snap["taken_ns"] + 1}
    assert reconcile([snap, later], lambda _ts: SimState(), lambda: []) == []


def test_a_kernel_without_the_iommu_debugfs_is_told_apart_from_a_host_without_the_iommu(tmp_path: Path) -> None:
    (tmp_path / "sys/class/iommu/dmar0").mkdir(parents=True)
    (tmp_path / "sys/kernel/debug/tracing").mkdir(parents=True)  # debugfs mounted, without iommu/
    snap = take(tmp_path)
    assert snap["unreadable"]["intel iommu debugfs"] == ("this kernel has no Intel IOMMU debugfs "
                                                         "(CONFIG_INTEL_IOMMU_DEBUGFS off), though dmar0 is there")
    assert snap["unreadable"]["amd iommu debugfs"].startswith("no such driver: no AMD IOMMU on this host")


def test_a_real_capture_keeps_its_start_and_end_snapshots_and_the_model_agrees_with_the_kernel() -> None:
    """lab-6.12/capture.pasidrec was recorded by `record` in the lab VM: both snapshots hold the real Intel PASID
    tables (eight devices, RID_PASID only) and the two ATS functions; the model, which saw no PASID, agrees."""
    path = Path(__file__).parent / "snapshot_fixtures/lab-6.12/capture.pasidrec"
    with Recording(path) as rec:
        report = check_report(path, RecordingIndex.build(rec))
        assert len(rec.header.extra["snapshots"]) == 1 and len(rec.footer["snapshots"]) == 1
    state = report["kernel_state"]
    assert len(state["snapshots"]) == 2 and state["unusable"] == [] and state["disagreements"] == []
    for snap in report["snapshots"]:
        assert len(snap["intel"]["devices"]) == 8 and snap["kernel"] == "6.12.118-pasidlab"
        assert {name for name, fn in snap["pci"].items() if fn["ats"]["enabled"]} == {"0000:01:00.0", "0000:02:00.0"}


def _iommu_sysfs(tmp_path: Path, unit: str, group: str, register: str, device: str) -> Path:
    """A host whose `device` (config space with a 20-bit PASID capability) sits behind `unit`, whose driver shows
    `register` in sysfs as group/file (intel-iommu/ecap, amd-iommu/features)."""
    regs = tmp_path / "sys/class/iommu" / unit / group.split("/")[0]
    regs.mkdir(parents=True)
    (regs / group.split("/")[1]).write_text(register + "\n")
    dev = tmp_path / "sys/bus/pci/devices" / device
    dev.mkdir(parents=True)
    (dev / "config").write_bytes(config_space(width=20))
    (dev / "iommu").symlink_to(tmp_path / "sys/class/iommu" / unit)
    return tmp_path


# VT-d ecap constructed from drivers/iommu/intel/iommu.h (ecap_smts bit 43, ecap_pasid bit 40, ecap_pss 39:35) with
# PSS 7, the value QEMU's intel-iommu advertises ("VTD_ECAP_PSS (7ULL << 35) /* limit: MemTxAttrs::pid */"), over
# the low bits of the common real ecap f050da. The AMD EFR is real: "AMD-Vi: Extended features (0x58f77ef22294a5a):
# PPR NX GT IA PC GA_vAPIC" from a public Ryzen boot log; the sysfs file is its one-value "%llx\n" form.
VTD_ECAP = 1 << 43 | 1 << 40 | 7 << 35 | 0xF050DA
AMD_EFR = 0x58F77EF22294A5A


@pytest.mark.parametrize("unit, group, register, max_pasids, width", [
    ("dmar0", "intel-iommu/ecap", f"{VTD_ECAP:x}", 256, 8),  # dmar.c: max_pasids = 2UL << ecap_pss
    ("ivhd0", "amd-iommu/features", f"{AMD_EFR:x}", 65535, 16),  # init.c: (1 << (PASmax + 1)) - 1, PASmax 15
])
def test_each_iommus_own_pasid_limit_narrows_its_devices_and_the_model_uses_the_smaller(
        tmp_path: Path, unit: str, group: str, register: str, max_pasids: int, width: int) -> None:
    """drivers/iommu/iommu.c dev_iommu_get_max_pasids() (6.2+): max_pasids = min(pci_max_pasids(), the IOMMU's)."""
    from explorer.events import Kind, make
    from explorer.simulator import Simulator
    from explorer.snapshot.iommu_limits import limit_width
    from probes.devices import scan

    root = _iommu_sysfs(tmp_path, unit, group, register, DEV)
    snap = take(root)
    assert snap["iommus"][unit]["max_pasids"] == max_pasids and snap["pci"][DEV]["iommu"] == unit
    assert snap["pci"][DEV]["pasid"]["width"] == 20 and limit_width(20, max_pasids) == width
    (info,) = scan(root / "sys/bus/pci/devices", root / "sys/class/iommu")
    assert (info.pasid_width, info.extra["iommu"], info.extra["iommu_max_pasids"]) == (20, unit, max_pasids)
    sim = Simulator([info], kernel="6.18")
    assert sim.state.max_pasids(DEV) == max_pasids
    sim.apply(make(Kind.PASID_ATTACH, 10, device=DEV, pasid=max_pasids, domain=1, domain_type="paging"), 0)
    assert [a.rule for a in sim.anomalies] == ["beyond_width"]  # the kernel refuses it: -EINVAL


def test_an_iommu_limit_sysfs_cannot_give_is_named_not_guessed(tmp_path: Path) -> None:
    # newer AMD kernels print EFR and EFR2 ("%llx:%llx\n"), in an order that changed between versions
    root = _iommu_sysfs(tmp_path, "ivhd0", "amd-iommu/features", f"{AMD_EFR:x}:0", DEV)
    smmu = root / "sys/class/iommu/smmu3.0x0000000009050000"
    smmu.mkdir()
    snap = take(root)
    assert snap["iommus"]["ivhd0"]["max_pasids"] is None and "not decoded" in snap["unreadable"]["iommu limit ivhd0"]
    assert snap["iommus"][smmu.name] == {"driver": None, "max_pasids": None,
                                         "why": "this IOMMU shows no PASID limit in sysfs (SMMUv3's SSIDSIZE, others)"}


def test_an_amd_debugfs_of_a_kernel_before_6_17_says_it_has_no_files(tmp_path: Path) -> None:
    """6.12's drivers/iommu/amd/debugfs.c (Debian's 6.12.118) makes debugfs/iommu/amd/iommu00 and nothing in it."""
    (tmp_path / "sys/kernel/debug/iommu/amd/iommu00").mkdir(parents=True)
    (tmp_path / "sys/class/iommu/ivhd0").mkdir(parents=True)
    snap = take(tmp_path)
    assert snap["amd"] == {"command_buffers": {}}
    assert "a kernel before 6.17 makes no files there" in snap["unreadable"]["amd iommu debugfs"]


PGTABLES = Path(__file__).parent / "snapshot_fixtures/lab-6.12-pgtables"


def _pgtable_host(tmp_path: Path, fixture: Path = PGTABLES, **files: bytes) -> Path:
    """A real VT-d debugfs (lab-6.12-pgtables/ unless told) under tmp_path, with `files` (path under intel/, "__"
    for "/": bytes) put over it."""
    intel = tmp_path / "sys/kernel/debug/iommu/intel"
    shutil.copytree(fixture / "intel", intel)
    links = tmp_path / "sys/class/iommu/dmar0/devices"
    links.mkdir(parents=True)
    for dev in (p.name for p in intel.iterdir() if p.is_dir()):
        (links / dev).mkdir()
    for name, data in files.items():
        (intel / name.replace("__", "/")).write_bytes(data)
    return tmp_path


def test_a_real_kernels_page_tables_and_invalidation_latency_read_into_the_snapshot(tmp_path: Path) -> None:
    """lab-6.12-pgtables/ (see its README): each device's own domain (PASID 0) as 6.12.118's
    domain_translation_struct printed it in a scalable-mode VT-d VM. The virtio-9p functions map one 4 KiB page
    each; the LPC bridge maps the first 16 MiB 1:1 (the part kept: 529 pages from IOVA 0); the SATA and SMBus
    functions share its domain, so their table is named, not read again."""
    snap = take(_pgtable_host(tmp_path))
    assert not any("page table" in what for what in snap["unreadable"]), snap["unreadable"]
    dumps = snap["intel"]["translations"]
    assert dumps["0000:00:01.0"] == [{"pasid": 0, "pgd": 0x98A000, "mappings": 1, "bytes": 4096, "writable": 1,
                                      "pages": {"4 KiB": 1}, "iova_pfns": [0xFFFFF, 0xFFFFF], "first": [
                                          {"iova_pfn": 0xFFFFF, "size": 4096, "addr": 0xCC3000, "write": True}]}]
    assert dumps["0000:00:02.0"][0]["pgd"] == 0x98E000 and dumps["0000:00:02.0"][0]["mappings"] == 1
    assert dumps["0000:00:00.0"][0] | {} == {"pasid": 0, "pgd": 0x985000, "mappings": 0, "bytes": 0, "writable": 0,
                                             "pages": {}, "iova_pfns": [], "first": []}
    lpc = dumps["0000:00:1f.0"][0]
    assert (lpc["mappings"], lpc["iova_pfns"], lpc["bytes"]) == (529, [0, 528], 529 << 12)
    assert all(m["addr"] == m["iova_pfn"] << 12 for m in lpc["first"])  # identity: IOVA = physical address
    assert dumps["0000:00:1f.2"] == dumps["0000:00:1f.3"] == [{"pasid": 0, "pgd": 0x993000,
                                                               "same_as": "0000:00:1f.0"}]
    assert snap["intel"]["latency"] == {"dmar0": {"inv_iotlb": {
        "<0.1us": 0, "0.1us-1us": 1009, "1us-10us": 150474, "10us-100us": 1763, "100us-1ms": 24, "1ms-10ms": 52,
        ">=10ms": 0, "min_us": 0, "max_us": 8978, "average_us": 2}}}
    r = subprocess.run([sys.executable, "-m", "explorer.cli.main", "snapshot", "--root", str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "0000:00:01.0 PASID 0: page table at 0x98a000: 1 mappings (1 x 4 KiB), 1 writable" in r.stdout
    assert "0000:00:1f.2 PASID 0: page table at 0x993000, the one 0000:00:1f.0 uses" in r.stdout
    assert "dmar0 invalidation latency: inv_iotlb 153,322 timed, average 2 us, max 8978 us" in r.stdout


def test_a_7_3_kernels_page_tables_read_the_same_way(tmp_path: Path) -> None:
    """lab-7.3-pgtables/ (7.3.4, the same VM): debugfs.c prints the same lines; the LPC bridge's shared domain is
    empty there (no floppy workaround in that config), and its two siblings name it instead of being read."""
    snap = take(_pgtable_host(tmp_path, Path(__file__).parent / "snapshot_fixtures/lab-7.3-pgtables"))
    dumps = snap["intel"]["translations"]
    assert [(d, x[0]["pgd"], x[0].get("mappings")) for d, x in sorted(dumps.items())] == [
        ("0000:00:00.0", 0x9A7000, 0), ("0000:00:01.0", 0x9AB000, 1), ("0000:00:02.0", 0x9AF000, 1),
        ("0000:00:1f.0", 0x9B3000, 0), ("0000:00:1f.2", 0x9B3000, None), ("0000:00:1f.3", 0x9B3000, None)]
    assert dumps["0000:00:02.0"][0]["first"] == [{"iova_pfn": 0xFFFFF, "size": 4096, "addr": 0x934000,
                                                  "write": True}]
    assert snap["intel"]["latency"]["dmar0"]["inv_iotlb"]["max_us"] == 338771


def test_a_page_table_past_the_cap_is_cut_at_a_line_and_says_so_and_the_snapshot_stays_bounded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    taking = importlib.import_module("explorer.snapshot.take")  # the module, not the function the package exports
    monkeypatch.setattr(taking, "PGTABLE_LIMIT", 16 << 10)
    snap = take(_pgtable_host(tmp_path / "a"))
    lpc = snap["intel"]["translations"]["0000:00:1f.0"][0]
    assert lpc["cut"] == "only the first 16 KiB of the dump were read: the counts cover that part"
    assert 100 < lpc["mappings"] < 529 and len(lpc["first"]) == 16  # whole lines only; 16 mappings kept whole
    monkeypatch.setattr(taking, "PGTABLE_BUDGET", 600)  # spent after the first dumps
    snap = take(_pgtable_host(tmp_path / "b"))
    assert sorted(snap["intel"]["translations"]) == ["0000:00:00.0", "0000:00:01.0", "0000:00:02.0"]
    assert snap["unreadable"]["intel page tables"].startswith("3 dumps not read (0000:00:1f.0 PASID 0, 0000:00:1f.2 "
                                                              "PASID 0, 0000:00:1f.3 PASID 0): this snapshot's")


_CUT_LINE = (PGTABLES / "intel/0000:00:1f.0/domain_translation_struct").read_bytes()[:300]


@pytest.mark.parametrize("name, data, why", [
    ("0000:00:01.0__domain_translation_struct", _CUT_LINE,  # a dump that ends mid-line below the cap
     "0000:00:01.0/domain_translation_struct: line 4: not a line of domain_translation_struct: '0x0000000000001 |"),
    ("0000:00:01.0__domain_translation_struct", b"\x1b[2J\xff\xfe garbage\n",
     "0000:00:01.0/domain_translation_struct: line 1: not the \"Device ... @0x...\" line a page-table dump begins "
     "with: '\\x1b[2J\ufffd\ufffd garbage'"),
    ("0000:00:01.0__domain_translation_struct", b"Device 0000:00:01.0 with pasid 0 @0x98a000\n0x1 |\t0x2\n",
     "line 2: not a line of domain_translation_struct: '0x1 |\\t0x2'"),
    ("dmar_perf_latency", b"IOMMU: dmar0 Register Base Address: fed90000\n   inv_iotlb 1 2 3\n",
     "dmar_perf_latency: line 2: not a line of dmar_perf_latency: '   inv_iotlb 1 2 3'"),
])
def test_a_malformed_or_partial_page_table_or_latency_dump_is_one_line_never_a_traceback(
        tmp_path: Path, name: str, data: bytes, why: str) -> None:
    root = _pgtable_host(tmp_path, **{name: data})
    snap = take(root)
    (what,) = [w for w in snap["unreadable"] if "page table" in w or "latency" in w]
    assert why in snap["unreadable"][what] and "\n" not in snap["unreadable"][what]
    assert snap["intel"]["translations"]["0000:00:02.0"][0]["mappings"] == 1  # the rest is still read
    r = subprocess.run([sys.executable, "-m", "explorer.cli.main", "snapshot", "--root", str(root)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "Traceback" not in r.stderr and "\x1b" not in r.stdout


@pytest.mark.parametrize("data, why", [
    (b"", "no page table: no context or PASID entry, or a pass-through one"),
    (b"DMA Remapping is not enabled on dmar0\n", "DMA remapping is not enabled"),
])
def test_a_device_whose_kernel_printed_no_page_table_says_why(tmp_path: Path, data: bytes, why: str) -> None:
    """domain_translation_struct_show() prints nothing for a pass-through or absent entry (6.12.118 and 7.3.4)."""
    snap = take(_pgtable_host(tmp_path, **{"0000:00:01.0__domain_translation_struct": data}))
    assert snap["intel"]["translations"]["0000:00:01.0"] == [{"pasid": 0, "pgd": None, "why": why}]


def _paging_snapshot(taken: int, paging: list[int], done: int | None = None) -> dict:
    """A snapshot of a VT-d host whose 0000:00:0a.0 has a paging domain's directory on each PASID of `paging`."""
    snap = {"taken_ns": taken, "done_ns": taken if done is None else done, "pci": {}, "unreadable": {},
            "intel": {"iommus": {}, "devices": {}, "paging_pasids": {DEV: paging},
                      "translations": {DEV: [{"pasid": p, "pgd": 0x1000 * (p + 1), "mappings": 1} for p in
                                             [0, *paging]]}}}
    assert stored.valid(snap) is None
    return snap


def test_a_paging_pasid_the_model_and_the_kernels_page_tables_disagree_on_is_a_finding() -> None:
    from explorer.simulator.state import Attachment

    def state(*held: tuple[int, str]) -> SimState:
        st = SimState()
        for pasid, kind in held:
            st.attachments[(DEV, pasid)] = Attachment(1, kind, 0, 0)
        return st

    start, end = _paging_snapshot(10, [3]), _paging_snapshot(20, [3, 6])
    model = {10: state((3, "paging"), (5, "paging"), (7, "sva")), 20: state((3, "paging"), (5, "paging"))}
    got = [(d.rule, d.ts_ns, d.pasid) for d in reconcile([start, end], model.__getitem__, lambda: [])]
    # 5: a paging domain in the model, no page table in the kernel, at both; 6: a page table made during the
    # recording that the model never attached; 7 (SVA) has no directory on a healthy kernel, and 3 agrees
    assert got == [("translation_missing", 10, 5), ("translation_missing", 20, 5), ("translation_unexplained", 20, 6)]
    # the model attaching 6 while the end snapshot was being read: either side may show, so no finding
    end = _paging_snapshot(20, [3, 6], done=25)
    model[25] = state((3, "paging"), (5, "paging"), (6, "paging"))
    got = [(d.rule, d.pasid) for d in reconcile([start, end], model.__getitem__, lambda: [])]
    assert ("translation_unexplained", 6) not in got


def test_a_copy_is_never_labelled_with_this_hosts_kernel_and_a_root_without_sys_is_refused(tmp_path: Path) -> None:
    """--root reads a copy of another host's /sys: its kernel is the copy's own osrelease, or unknown; a folder
    holding no sys/ (a typo) was read as an empty host running this machine's kernel."""
    (tmp_path / "sys").mkdir()
    assert take(tmp_path)["kernel"] == "unknown" != os.uname().release
    (tmp_path / "proc/sys/kernel").mkdir(parents=True)
    (tmp_path / "proc/sys/kernel/osrelease").write_text("6.6.0-other\n")
    r = subprocess.run([sys.executable, "-m", "explorer.cli.main", "snapshot", "--root", str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("kernel 6.6.0-other:"), r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-m", "explorer.cli.main", "snapshot", "--root", str(tmp_path / "nope")],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "holds no sys/ folder" in r.stderr


@pytest.mark.parametrize("change, words", [
    (lambda s: s["pci"].update({DEV: 3}), "pci must map devices"),
    (lambda s: s["pci"].update({DEV: {"pasid": {"enabled": True}}}), "pci must map devices"),
    (lambda s: s["pci"].update({7: {}}), "pci must map devices"),
    (lambda s: s["intel"]["devices"].update({DEV: 3}), "intel.devices must map devices"),
    (lambda s: s["intel"]["devices"].update({DEV: {"iommu": ["dmar0"], "pasids": []}}), "intel.devices must map"),
    (lambda s: s["intel"]["devices"].update({DEV: {"iommu": "dmar0", "pasids": [5]}}), "intel.devices must map"),
    (lambda s: s["intel"].update({"iommus": {"dmar0": True}}), "intel.iommus must map"),
    (lambda s: s.update({"done_ns": "later"}), "done_ns must be an integer"),
])
def test_a_snapshot_whose_parts_are_of_the_wrong_shape_is_unusable_not_a_crash(
        change: Callable[[dict], object], words: str) -> None:
    """Each part the checks beside the model read by name (explorer/reconcile.py), crafted: `check` once stopped
    with an internal error on a device's capabilities or table entry that was not a map."""
    snap = _paging_snapshot(10, [3])
    snap["pci"] = {DEV: {"pasid": {"width": 20, "enabled": True}}}
    snap["intel"]["devices"] = {DEV: {"iommu": "dmar0", "pasids": [{"pasid": 3, "pgtt": "first-stage"}]}}
    assert stored.valid(snap) is None
    change(snap)
    assert words in (stored.valid(snap) or "")
    found, problems = stored.snapshots({"snapshots": [snap]}, None)
    assert found == [] and len(problems) == 1 and words in problems[0]


def test_a_first_machine_s_snapshot_naming_a_machine_is_still_set_beside_the_model() -> None:
    """Which machine a snapshot is of is the recording's to say (a merged guest's entry): one in the header or
    footer naming a machine of its own was counted and then silently never compared."""
    snap = {**_paging_snapshot(10, [3]), stored.MACHINE: "elsewhere"}
    found, problems = stored.snapshots({"snapshots": [snap]}, None)
    assert problems == [] and len(found) == 1 and stored.MACHINE not in found[0]
