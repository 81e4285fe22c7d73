"""How much a live capture costs and how much it keeps, against bpftrace tracing the same load, in one run.

A load generator (a child process, in C when a C compiler is there: the most one core of load can offer, else in
Python) issues IOMMU_IOAS_ALLOC ioctls on /dev/null as fast as it can (or at --rate) for --seconds; each one fires
sys_enter_ioctl and sys_exit_ioctl before the kernel answers ENOTTY. `offered_per_s` is what it measured itself
doing while traced (calls made / its own elapsed time), never the rate asked for.

  (a) `pasid-explorer record --pid GENERATOR` runs meanwhile: events recorded, `lost` events, and the
      recorder's CPU time (utime + stime from /proc/<pid>/stat) from the moment its probes are attached until
      it has caught up, per event recorded;
  (b) the same load traced by bpftrace, printing the same fields per call (time, pid, tid, comm, fd, cmd, ret
      and the argument struct's size, flags and out_ioas_id) to a file: lines written, events bpftrace reports
      lost, and its CPU time per line, measured the same way;
  (c) when (a) lost events at full speed, (a) again with the generator held to --target events/s, to check the
      no-loss target there;
  (d) (a) again at the rate bpftrace let the generator reach, so that both CPU costs are also compared at one
      rate (a tracer that slows the traced process down gets fewer, cheaper-to-batch events).

The recording's footer also says what the probes themselves cost in the kernel (BPF run-time statistics):
`bpf_ns_per_event`. The last line is one JSON object: offered_per_s, recorded_per_s, lost,
capture_cpu_us_per_event, bpftrace_cpu_us_per_event, cpu_ratio (each at full speed), cpu_ratio_same_load (the
capture at the rate bpftrace let the generator reach, against bpftrace), load_avg (the 1-minute load average at the
start and the end: other processes on the CPUs decide how much of a core the capture gets), and more.
Targets: lossless at the most one core of load offers (at least 500,000 events/s on a 2-core machine), capture CPU
at most 1 us per event and at most 1/5 of bpftrace's on the same load. Needs root, bcc and bpftrace.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explorer.cli.commands.record import DEFAULT_RING_MB  # noqa: E402
from explorer.recording import Recording  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")

# The load generator: waits for a line on stdin, then calls for `seconds`, at `rate` per second when given
# (checked every 256 calls), and prints how many calls it made and over how long.
GENERATOR = r"""
import fcntl, os, sys, time
seconds, rate = float(sys.argv[1]), float(sys.argv[2])
fd = os.open("/dev/null", os.O_RDONLY)
buf = bytearray(b"\x0c\x00\x00\x00" + bytes(8))  # struct iommu_ioas_alloc {size 12, flags 0, out_ioas_id}
cmd = 0x3B81  # IOMMU_IOAS_ALLOC
ioctl = fcntl.ioctl
sys.stdin.readline()
n, start = 0, time.monotonic()
end = start + seconds
while True:
    for _ in range(256):
        try:
            ioctl(fd, cmd, buf)
        except OSError:
            pass
    n += 256
    now = time.monotonic()
    if now >= end:
        break
    if rate:
        ahead = n / rate - (now - start)
        if ahead > 0:
            time.sleep(ahead)
print(n, time.monotonic() - start, flush=True)
"""

GENERATOR_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
    double seconds = atof(argv[1]), rate = atof(argv[2]);
    unsigned int buf[3] = {12, 0, 0};  /* struct iommu_ioas_alloc {size 12, flags 0, out_ioas_id} */
    int fd = open("/dev/null", O_RDONLY);
    char line[16];
    if (!fgets(line, sizeof line, stdin)) return 1;
    long n = 0;
    double start = now(), end = start + seconds, t;
    for (;;) {
        for (int i = 0; i < 256; i++) ioctl(fd, 0x3B81, buf);
        n += 256;
        t = now();
        if (t >= end) break;
        if (rate > 0) {
            double ahead = n / rate - (t - start);
            struct timespec s = {(time_t)ahead, (long)((ahead - (time_t)ahead) * 1e9)};
            if (ahead > 0) nanosleep(&s, 0);
        }
    }
    printf("%ld %f\n", n, now() - start);
    return 0;
}
"""

BPFTRACE = r"""
tracepoint:syscalls:sys_enter_ioctl /pid == $1 && args->cmd >> 8 == 0x3b/ {
  @arg[tid] = args->arg; @fd[tid] = args->fd; @cmd[tid] = args->cmd;
}
tracepoint:syscalls:sys_exit_ioctl /@cmd[tid]/ {
  $a = (uint32 *)uptr(@arg[tid]);
  printf("%llu %d %d %s %d 0x%x %d %u %u %u\n", nsecs, pid, tid, comm, @fd[tid], @cmd[tid], args->ret,
         *$a, *($a + 1), *($a + 2));
  delete(@arg[tid]); delete(@fd[tid]); delete(@cmd[tid]);
}
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def wait_idle(pid: int, quiet_s: float = 0.3, limit_s: float = 30.0) -> float:
    """Wait until the process has used (almost) no CPU for `quiet_s`: it has drained its backlog."""
    end = time.monotonic() + limit_s
    last = cpu_seconds(pid)
    while time.monotonic() < end:
        time.sleep(quiet_s)
        now = cpu_seconds(pid)
        if now - last <= 0.02 * quiet_s + 1 / TICK:
            return now
        last = now
    return last


GENERATOR_CMD: list[str] = [sys.executable, "-c", GENERATOR]


def build_generator(tmp: Path) -> str:
    """The C generator when a compiler is there (GENERATOR_CMD then runs it); says which generator runs."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return "python"
    src, exe = tmp / "gen.c", tmp / "gen"
    src.write_text(GENERATOR_C)
    if subprocess.run([cc, "-O2", "-o", str(exe), str(src)], capture_output=True).returncode != 0:
        return "python"
    GENERATOR_CMD[:] = [str(exe)]
    return "c"


def start_generator(seconds: float, rate: float) -> subprocess.Popen[str]:
    return subprocess.Popen([*GENERATOR_CMD, str(seconds), str(rate)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def run_generator(gen: subprocess.Popen[str]) -> tuple[int, float]:
    assert gen.stdin is not None and gen.stdout is not None
    gen.stdin.write("go\n")
    gen.stdin.flush()
    n, elapsed = gen.stdout.readline().split()
    gen.wait()
    return int(n), float(elapsed)


def bench_record(tmp: Path, seconds: float, rate: float, ring_kb: int) -> dict[str, float]:
    gen = start_generator(seconds, rate)
    out = tmp / f"bench-{rate:.0f}.pasidrec"
    rec = subprocess.Popen([sys.executable, "-m", "explorer.cli.main", "record", "-o", str(out), "--force", "--pid",
                            str(gen.pid), "--ring-kb", str(ring_kb)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    assert rec.stderr is not None
    ready = rec.stderr.readline()
    if "hooks attached" not in ready:
        gen.kill()
        raise SystemExit(f"record did not start: {ready}{rec.stderr.read()}")
    cpu0 = cpu_seconds(rec.pid)
    issued, elapsed = run_generator(gen)
    cpu1 = wait_idle(rec.pid)
    rec.send_signal(signal.SIGTERM)
    rec.communicate(timeout=60)
    r = Recording(out)
    counts = (r.footer or {}).get("counts", {})
    uapi = counts.get("uapi", 0)
    lost = sum(e.get("count", 0) for e in r.iter_events() if e.kind == "lost") if counts.get("lost") else 0
    costs = (r.footer or {}).get("bpf_costs", {})
    bpf_ns = sum(costs[h]["run_ns"] for h in ("syscalls:sys_enter_ioctl", "syscalls:sys_exit_ioctl") if h in costs)
    return {"issued": issued, "seconds": elapsed, "offered_per_s": issued / elapsed, "recorded": uapi,
            "recorded_per_s": uapi / elapsed, "lost": lost, "cpu_s": cpu1 - cpu0,
            "cpu_us_per_event": (cpu1 - cpu0) / max(uapi, 1) * 1e6,
            "bpf_ns_per_event": bpf_ns / max(issued, 1) if costs and "problem" not in costs else None}


def interrupt(proc: subprocess.Popen[str], limit_s: float = 300.0) -> str:
    """SIGINT until the process exits (bpftrace can miss one that comes while it prints its backlog, which takes
    minutes on a loaded host); its stderr."""
    end = time.monotonic() + limit_s
    while True:
        proc.send_signal(signal.SIGINT)
        try:
            return proc.communicate(timeout=15)[1]
        except subprocess.TimeoutExpired:
            if time.monotonic() > end:
                proc.kill()
                raise


def bench_bpftrace(tmp: Path, seconds: float, rate: float) -> dict[str, float]:
    gen = start_generator(seconds, rate)
    script = tmp / "ioctl.bt"
    script.write_text(BPFTRACE)
    lines_file = tmp / "bpftrace.out"
    with lines_file.open("w") as sink:
        bt = subprocess.Popen(["bpftrace", str(script), str(gen.pid)], stdout=sink, stderr=subprocess.PIPE,
                              text=True)
        deadline = time.monotonic() + 60
        while "Attaching" not in lines_file.read_text() and time.monotonic() < deadline:
            if bt.poll() is not None:
                gen.kill()
                raise SystemExit(f"bpftrace failed: {bt.stderr.read() if bt.stderr else ''}")
            time.sleep(0.05)
        cpu0 = cpu_seconds(bt.pid)
        issued, elapsed = run_generator(gen)
        cpu1 = wait_idle(bt.pid)
        err = interrupt(bt)
    # bpftrace prints "Lost N events" on stdout (v0.17, Debian's) or stderr (others): count both
    said = [*err.splitlines(), *lines_file.read_text().splitlines()]
    lost = sum(int(w[1]) for w in (ln.split() for ln in said if ln.startswith("Lost")) if len(w) > 1 and w[1].isdigit())
    lines = sum(1 for ln in lines_file.open() if ln[:1].isdigit())
    return {"issued": issued, "offered_per_s": issued / elapsed, "lines": lines, "lines_per_s": lines / elapsed,
            "lost": lost, "cpu_s": cpu1 - cpu0, "cpu_us_per_event": (cpu1 - cpu0) / max(lines, 1) * 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0, help="how long the generator runs (default 5)")
    ap.add_argument("--rate", type=float, default=0, help="offered events/s (default 0: as fast as it can)")
    ap.add_argument("--target", type=float, default=200_000, help="the no-loss target rate (default 200,000)")
    ap.add_argument("--ring-kb", type=int, default=DEFAULT_RING_MB * 1024,
                    help=f"record's ring buffer (default {DEFAULT_RING_MB} MiB, as record's)")
    ap.add_argument("--json", action="store_true", help="print only the JSON line")
    args = ap.parse_args()
    if os.geteuid() != 0 or shutil.which("bpftrace") is None:
        raise SystemExit("benchmarks/capture.py needs root and bpftrace")

    def say(text: str) -> None:
        if not args.json:
            print(text, flush=True)

    load0 = os.getloadavg()[0]
    say(f"load average {load0:.2f} at the start (other processes share the CPUs: losses depend on it)")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        generator = build_generator(tmp)
        free = start_generator(1.0, 0)
        n, el = run_generator(free)
        say(f"generator ({generator}), untraced:   {n / el:>12,.0f} calls/s")
        rec = bench_record(tmp, args.seconds, args.rate, args.ring_kb)
        say(f"record ({args.ring_kb // 1024} MiB ring): offered {rec['offered_per_s']:>10,.0f}/s  "
            f"recorded {rec['recorded_per_s']:>10,.0f}/s  "
            f"lost {rec['lost']:>9,}  capture CPU {rec['cpu_us_per_event']:.2f} us/event  "
            f"probes in the kernel {rec['bpf_ns_per_event'] or 0:,.0f} ns/event")
        bt = bench_bpftrace(tmp, args.seconds, args.rate)
        say(f"bpftrace: offered {bt['offered_per_s']:>10,.0f}/s  printed  {bt['lines_per_s']:>10,.0f}/s  "
            f"lost {bt['lost']:>9,}  bpftrace CPU {bt['cpu_us_per_event']:.2f} us/event")
        same = bench_record(tmp, args.seconds, bt["offered_per_s"], args.ring_kb)
        say(f"record at bpftrace's {bt['offered_per_s']:,.0f}/s: lost {same['lost']:,}  capture CPU "
            f"{same['cpu_us_per_event']:.2f} us/event")
        at_target = None
        if rec["lost"] and not args.rate:
            at_target = bench_record(tmp, args.seconds, args.target, args.ring_kb)
            say(f"record at {args.target:,.0f}/s: offered {at_target['offered_per_s']:,.0f}/s  "
                f"lost {at_target['lost']:,}  capture CPU {at_target['cpu_us_per_event']:.2f} us/event")
    result = {
        "offered_per_s": round(rec["offered_per_s"]), "recorded_per_s": round(rec["recorded_per_s"]),
        "lost": rec["lost"], "capture_cpu_us_per_event": round(rec["cpu_us_per_event"], 3),
        "bpftrace_cpu_us_per_event": round(bt["cpu_us_per_event"], 3),
        "cpu_ratio": round(rec["cpu_us_per_event"] / bt["cpu_us_per_event"], 3) if bt["cpu_us_per_event"] else None,
        "cpu_ratio_same_load": round(same["cpu_us_per_event"] / bt["cpu_us_per_event"], 3)
        if bt["cpu_us_per_event"] else None,
        "bpf_ns_per_event": None if rec["bpf_ns_per_event"] is None else round(rec["bpf_ns_per_event"]),
        "generator": generator,
        "bpftrace_printed_per_s": round(bt["lines_per_s"]), "bpftrace_lost": bt["lost"],
        "capture_cpu_us_per_event_at_bpftrace_rate": round(same["cpu_us_per_event"], 3),
        "generator_untraced_per_s": round(n / el), "cpus": os.cpu_count(), "ring_kb": args.ring_kb,
        "load_avg": [round(x, 2) for x in (load0, os.getloadavg()[0])],
    }
    if at_target is not None:
        result.update({"target_offered_per_s": round(at_target["offered_per_s"]), "target_lost": at_target["lost"],
                       "target_capture_cpu_us_per_event": round(at_target["cpu_us_per_event"], 3)})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
