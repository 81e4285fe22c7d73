"""An import reads its input in blocks: where the blocks fall must never change what it finds, its memory does not
grow with the input, and it reports how far it has read."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

from explorer.importers import import_log, pipeline
from explorer.recording import Recording

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).parents[2]


def _all_fixture_logs(fmt: str | None) -> str:
    """Every fixture case of one format, one after another, as one long log."""
    parts = []
    for path in sorted(FIXTURES.glob("*.yaml")):
        for case in yaml.safe_load(path.read_text())["cases"]:
            if case.get("format") == fmt and case.get("clock") != "line":
                parts.append(case["log"])
    return "".join(parts)


def _rows(path: Path) -> list[list]:
    with Recording(path) as rec:
        return sorted(rec.iter_rows(), key=lambda r: (r[0], r[1], str(r[2]), str(r[8])))


@pytest.mark.parametrize("fmt", [None, "ftrace"])
@pytest.mark.parametrize("block", [1, 7, 64, 333])
def test_block_boundaries_do_not_change_the_events(fmt: str | None, block: int, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "all.log"
    src.write_text(_all_fixture_logs(fmt))
    whole = import_log(str(src), tmp_path / "whole.pasidrec", fmt=fmt)
    monkeypatch.setattr(pipeline, "BLOCK", block)
    cut = import_log(str(src), tmp_path / "cut.pasidrec", fmt=fmt)
    assert whole.events > 0
    assert cut.footer() == whole.footer()
    assert _rows(tmp_path / "cut.pasidrec") == _rows(tmp_path / "whole.pasidrec")


def test_a_log_without_final_newline_keeps_its_last_line(tmp_path: Path) -> None:
    src = tmp_path / "cut.log"
    src.write_bytes(b"[    1.000000] DMAR: [DMA Write NO_PASID] Request device [00:14.0] fault addr 0x1000 "
                    b"[fault reason 0x05] PTE Write access is not set")
    stats = import_log(str(src), tmp_path / "out.pasidrec")
    assert (stats.lines, stats.events) == (1, 1)
    with Recording(tmp_path / "out.pasidrec") as rec:
        (ev,) = rec.iter_events()
    assert (ev.device, ev.get("access"), ev.get("code")) == ("0000:00:14.0", "write", 5)


def test_a_pyarrow_without_its_private_compute_module_reads_the_same_events(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "all.log"
    src.write_text(_all_fixture_logs(None))
    usual = import_log(str(src), tmp_path / "usual.pasidrec")
    import pyarrow.compute  # noqa: F401 - what the scanner falls back on, loaded while its private module is whole

    monkeypatch.setitem(sys.modules, "pyarrow._compute", types.ModuleType("pyarrow._compute"))
    moved = import_log(str(src), tmp_path / "moved.pasidrec")
    assert usual.events > 0
    assert moved.footer() == usual.footer()
    assert _rows(tmp_path / "moved.pasidrec") == _rows(tmp_path / "usual.pasidrec")


@pytest.mark.parametrize("fmt", [None, "ftrace"])
def test_lines_not_understood_are_all_counted_and_the_first_sampled_with_their_line_numbers(
        fmt: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    new = "something new the kernel started printing"
    odd = (f"[{{n:5d}}.000000] DMAR: [DMA Write] Request device [00:14.{{n}}] {new}" if fmt is None else
           f"  irq/24-AMD-Vi-48  [002] ....  {{n}}.000000: io_page_fault: {new}")
    lines = [odd.format(n=n) if n % 3 == 0 else f"[{n:5d}.000000] usb 1-1: new device number {n}"
             for n in range(1, 241)]
    src = tmp_path / "odd.log"
    src.write_text("".join(line + "\n" for line in lines))
    monkeypatch.setattr(pipeline, "BLOCK", 500)  # the samples' lines lie in many blocks
    stats = import_log(str(src), tmp_path / "out.pasidrec", fmt=fmt)
    assert stats.unknown == 80
    assert stats.unknown_samples == [[n, lines[n - 1]] for n in range(3, 151, 3)]


def test_the_boot_lines_every_iommu_host_prints_are_not_listed_as_faults_not_understood(tmp_path: Path) -> None:
    """drivers/iommu/iommu.c (iommu_subsys_init) prints the default domain type and the TLB invalidation policy, and
    intel/dmar.c the queued invalidation, at every boot: "Default" and "invalidation" are not faults. A fault line
    in words the importer does not know is still listed."""
    lines = ["iommu: Default domain type: Translated", "iommu: DMA domain TLB invalidation policy: lazy mode",
             "DMAR: dmar0: Using Queued invalidation",
             "DMAR: [DMA Write] Request device [00:14.1] something new the kernel started printing"]
    src = tmp_path / "boot.log"
    src.write_text("".join(f"[    0.{i:06d}] {line}\n" for i, line in enumerate(lines)))
    stats = import_log(str(src), tmp_path / "out.pasidrec")
    assert stats.unknown_samples == [[4, f"[    0.000003] {lines[3]}"]]


def test_progress_is_reported_in_increasing_bytes_up_to_the_size(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "all.log"
    src.write_text(_all_fixture_logs(None) * 8)  # past the first 64 KiB the format is sniffed from
    monkeypatch.setattr(pipeline, "BLOCK", 4096)
    calls: list[tuple[int, int]] = []
    import_log(str(src), tmp_path / "out.pasidrec", progress=lambda done, total: calls.append((done, total)))
    size = src.stat().st_size
    done = [d for d, _ in calls]
    assert len(calls) > 3 and all(total == size for _, total in calls)
    assert done == sorted(set(done)) and done[-1] == size


# The child imports a generated log of MB megabytes (real lines from the fixtures, re-stamped) and prints how far
# its peak RSS rose during the import alone.
_MEASURE = """
import resource, sys
from pathlib import Path
from explorer.importers import import_log, pipeline
path, mb = Path(sys.argv[1]), int(sys.argv[2])
fault = "AMD-Vi: Event logged [IO_PAGE_FAULT device=05:00.0 domain=0x0012 address=0x00000000ff6101b0 flags=0x0070]"
noise = "usb 3-3: new high-speed USB device number 2 using xhci_hcd"
with open(path, "w") as f:
    t, size = 0, 0
    while size < mb << 20:
        chunk = "".join(f"[{(t + i) // 1000:6d}.{(t + i) % 1000:03d}000] {fault if i % 10 == 0 else noise}\\n"
                        for i in range(1000))
        f.write(chunk)
        t, size = t + 1000, size + len(chunk)
pipeline.BLOCK = 1 << 20
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
import_log(str(path), path.with_suffix(".pasidrec"))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


def _rss_growth_kb(tmp_path: Path, mb: int) -> int:
    out = subprocess.run([sys.executable, "-c", _MEASURE, str(tmp_path / f"big{mb}.log"), str(mb)],
                         capture_output=True, text=True, timeout=300, check=True, cwd=ROOT)
    return int(out.stdout.strip())


def test_memory_stays_bounded_when_the_input_grows_fourfold(tmp_path: Path) -> None:
    small, large = _rss_growth_kb(tmp_path, 3), _rss_growth_kb(tmp_path, 12)
    assert large - small < 8 << 10, f"peak RSS rose {small} KiB for 3 MiB, {large} KiB for 12 MiB"
