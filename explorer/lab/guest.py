"""Runs inside a lab guest: attach the capture, run one command under it, and write the recording and figures.

`python -m explorer.lab.guest --out DIR -- CMD...` is what `lab run` puts in the guest's job. The capture runs in
this process, so the CPU time it spends per event is measured here, inside the VM, where the events are made.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from probes.capability import ATTACHED
from probes.capture import Capture, CaptureOptions
from probes.recorder import RecordingTee

SETTLE_S = 0.5  # after the command exits: long enough for the capture's reorder window to pass


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="explorer.lab.guest")
    p.add_argument("--out", required=True, type=Path, help="folder (the writable share) for results")
    p.add_argument("--ring-kb", type=int, required=True)
    p.add_argument("--stop-at", type=Path, help="end the capture once the command creates this file (it may "
                                                "then hold kernel state until its stdin closes)")
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    local = Path("/tmp/lab-recording.pasidrec")  # tmpfs: the capture's writes stay off the 9p share
    started = time.monotonic()
    source = RecordingTee(Capture(CaptureOptions(ring_bytes=args.ring_kb * 1024)), local)
    attach_s = time.monotonic() - started
    hooks = sorted(v.hook.name for v in source.capture.verdicts if v.status == ATTACHED)
    cpu0 = time.process_time()
    ran = time.monotonic()
    with (args.out / "command.out").open("wb") as out, (args.out / "command.err").open("wb") as err:
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=out, stderr=err)
        while proc.poll() is None and not (args.stop_at and args.stop_at.exists()):
            source.poll(0.05)
        settle = time.monotonic() + SETTLE_S
        while time.monotonic() < settle:
            source.poll(0.05)
        command_s = time.monotonic() - ran
        extra = source.close("complete")
        capture_cpu_s = time.process_time() - cpu0
        proc.communicate()  # closes its stdin: a holding command lets go now, after the capture ended
    events = source.writer.events_written
    shutil.copyfile(local, args.out / "recording.pasidrec")
    figures = {"status": proc.returncode, "attach_s": round(attach_s, 2), "command_s": round(command_s, 3),
               "events": events, "lost": int(extra.get("lost", 0)), "hooks": hooks,
               "capture_cpu_s": round(capture_cpu_s, 4),
               "capture_cpu_us_per_event": round(1e6 * capture_cpu_s / events, 1) if events else None}
    (args.out / "figures.json").write_text(json.dumps(figures, indent=1))
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
