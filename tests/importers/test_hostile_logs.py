"""Logs from strangers: lines an attacker writes (nested JSON, numbers past any kernel's, a device given as a
list, a first line longer than the sample) and a time-boxed fuzz of the importers and the recording reader. Each
answer is an import, or one clear line; never a traceback (issue 16)."""

from __future__ import annotations

import contextlib
import random
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from hostile_files import GOOD, write_crafted
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from explorer.cli.main import main
from explorer.errors import ExplorerError
from explorer.importers import import_log
from explorer.loading import open_index
from explorer.recording.framing import FRAME

FIXTURES = Path(__file__).parent / "fixtures"
LINES = [line for f in sorted(FIXTURES.glob("*.yaml")) for case in yaml.safe_load(f.read_text())["cases"]
         for line in case["log"].splitlines() if line.strip()]
TRACE = "           <...>-1234  [001] ....  {sec}.000000: {event}: {msg}\n"
FUZZ_SECONDS = 2.0


def imports(tmp_path: Path, text: str | bytes, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Import `text` through the CLI, in this process; then `check` what it made. Exit status and stderr."""
    src = tmp_path / "in.log"
    src.write_bytes(text if isinstance(text, bytes) else text.encode())
    out = tmp_path / "out.pasidrec"
    status = main(["import", str(src), "-o", str(out), "--force"])  # (one output, written over example after example)
    err = capsys.readouterr().err
    assert status in (0, 2), err
    if status == 0:
        assert main(["check", str(out)]) in (0, 1)
    else:
        assert err.count("\n") == 1 and str(src) in err
    capsys.readouterr()
    return status, err


@pytest.mark.parametrize("text", [
    TRACE.format(sec=100, event="tracing_mark_write", msg="pasid_explorer: " + '{"a":' * 50_000 + "1" + "}" * 50_000),
    TRACE.format(sec=100, event="tracing_mark_write", msg='pasid_explorer: {"kind": "fault", "device": [1]}'),
    TRACE.format(sec=100, event="tracing_mark_write", msg='pasid_explorer: {"kind": "fault", "pasid": -1}'),
    TRACE.format(sec="9" * 5000, event="io_page_fault", msg="IOMMU:x 0000:05:00.0 iova=0x1000 flags=0x0000"),
    "[" + "9" * 5000 + ".000000] DMAR: [DMA Read NO_PASID] Request device [00:02.0] fault addr 0x1000 [fault reason "
    "0x06] PTE Read access is not set\n",
    "x" * 70_000 + "\n" + LINES[0] + "\n",
    "\x00\xff\xfe garbage \x1b[2J\n" * 10,
], ids=["nested-json", "device-list", "negative-pasid", "5000-digit-seconds", "5000-digit-dmesg", "long-first-line",
        "binary"])
def test_a_crafted_log_line_is_read_or_refused_never_a_crash(tmp_path: Path, text: str,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    imports(tmp_path, text, capsys)


def test_a_first_line_longer_than_the_sample_does_not_hide_the_rest(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    dmar = next(line for line in LINES if "DMAR" in line and "fault addr" in line)
    status, _ = imports(tmp_path, "x" * 70_000 + "\n" + dmar + "\n", capsys)
    assert status == 0


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(st.tuples(st.sampled_from(LINES), st.integers(0, 200), st.text(max_size=12)), min_size=1,
                      max_size=6))
def test_real_lines_spliced_with_anything_import_or_refuse(tmp_path: Path, parts: list[tuple[str, int, str]],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    text = "".join(line[:cut] + junk + line[cut:] + "\n" for line, cut, junk in parts)
    imports(tmp_path, text, capsys)


def _mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(b))
        op = rng.random()
        if op < 0.5:
            b[i] = rng.randrange(256)
        elif op < 0.75:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        else:
            del b[i:i + rng.randint(1, 16)]
    return bytes(b)


def test_fuzz_the_importers_for_a_few_seconds(tmp_path: Path) -> None:
    rng = random.Random(16)
    corpus = ["\n".join(LINES[i:i + 20]).encode() for i in range(0, len(LINES), 20)]
    deadline, tried = time.monotonic() + FUZZ_SECONDS, 0
    while time.monotonic() < deadline:
        src = tmp_path / "f.log"
        src.write_bytes(_mutate(rng, rng.choice(corpus)))
        with contextlib.suppress(ExplorerError):  # one clear line; anything else fails the test with its traceback
            import_log(str(src), tmp_path / "f.pasidrec")
        tried += 1
    assert tried > 10


def _recrc(data: bytearray, start: int) -> None:
    """Recompute the CRC of every frame from `start` on, so that mutations reach the decoder, not the checksum."""
    off = start
    while off + FRAME.size <= len(data):
        tag, length, _ = FRAME.unpack_from(data, off)
        end = off + FRAME.size + length
        if end > len(data):
            return
        FRAME.pack_into(data, off, tag, length, zlib.crc32(data[off + FRAME.size:end]))
        off = end


def test_fuzz_the_reader_with_valid_checksums_for_a_few_seconds(tmp_path: Path) -> None:
    rng = random.Random(16)
    base = write_crafted(tmp_path / "base.pasidrec", [GOOD, GOOD[::-1]]).read_bytes()
    deadline, tried = time.monotonic() + FUZZ_SECONDS, 0
    while time.monotonic() < deadline:
        data = bytearray(base)
        for _ in range(rng.randint(1, 6)):  # change bytes inside payloads only: lengths stay, CRCs are redone
            data[rng.randrange(8 + FRAME.size, len(data) - 16)] = rng.randrange(256)
        _recrc(data, 8)
        path = tmp_path / "f.pasidrec"
        path.write_bytes(bytes(data))
        read(path)
        tried += 1
    assert tried > 10


def read(path: Path) -> Any:
    """Open, model and read every event of `path` as the commands do; ExplorerError is the one clear line."""
    try:
        idx = open_index(path)
    except ExplorerError:
        return None
    for i in range(idx.n):
        idx.event(i).brief()
    return idx.damage


# drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.c (4.8+): arm_smmu_evtq_thread() prints an event's header, then each of
# its record's words on a line of its own ("\t0x%016llx")
SMMU = "[   70.3{n:05d}] arm-smmu-v3 arm-smmu-v3.5.auto: {msg}\n"
WORDS = ("0x0002060000000010", "0x0000020000000000", "0x00000000ff9bc000", "0x0000000000000000")


@pytest.mark.parametrize("garbled", [1, 3])
def test_an_smmu_event_word_garbled_by_a_control_character_is_counted_and_the_words_after_it_kept(
        tmp_path: Path, garbled: int) -> None:
    words = [w if i != garbled else w[:8] + "\x1b[31m" + w[8:] for i, w in enumerate(WORDS)]
    lines = ["event 0x10 received:", *(f"\t{w}" for w in words), "event 0x10 received:", *(f"\t{w}" for w in WORDS)]
    log = "".join(SMMU.format(n=n, msg=msg) for n, msg in enumerate(lines))
    src, out = tmp_path / "smmu.log", tmp_path / "smmu.pasidrec"
    src.write_text(log)
    stats = import_log(str(src), out)
    assert (stats.parsed, stats.unknown) == (9, 1)  # the garbled line is sampled as not understood, not ignored
    assert stats.unknown_samples == [[garbled + 2, log.splitlines()[garbled + 1]]]
    first, second = (open_index(out).event(i) for i in range(2))
    assert first.get("reason").endswith("[record words garbled in the log]")
    assert second.get("reason").startswith("F_TRANSLATION (0x10)") and "garbled" not in second.get("reason")
    # its first two words read, the event names its stream's device, as the whole record does
    assert (first.device == second.device) == (garbled == 3)
