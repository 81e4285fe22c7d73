"""How fast PASID Explorer opens a big recording, against a bare msgpack decode of the same file.

Generates a seeded N-event recording (not timed), then in one run times:
  (a) the baseline: decoding every chunk of the file with msgpack into Python objects, nothing else;
  (b) PASID Explorer opening it, building its per-device / per-PASID index and simulator checkpoints;
  (c) the simulator's full state at 1,000 random times (seek).
Both (a) and (b) run with the cyclic garbage collector off, as the explorer's indexer does, and each is the
best of --repeat runs, interleaved, so that machine noise hits both alike. The last line is one JSON object.

Targets at N=1,000,000 on a 2-core machine: ratio (ingest / decode rate) >= 0.40, bytes_per_event <= 80,
seek_p99_ms < 20.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from explorer.index import RecordingIndex  # noqa: E402
from explorer.recording import Recording  # noqa: E402
from explorer.workload import write_workload  # noqa: E402


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def bare_decode(path: str) -> tuple[float, int]:
    """The baseline: every chunk's bytes read and msgpack-decoded, nothing else done with them."""
    rec = Recording(path)
    gc.disable()
    t0 = time.perf_counter()
    n = 0
    for i in range(len(rec.chunks)):
        n += len(msgpack.unpackb(rec.chunk_payload(i), raw=False, strict_map_key=False)["events"])
    elapsed = time.perf_counter() - t0
    gc.enable()
    rec.close()
    return elapsed, n


def ingest(path: str) -> tuple[float, RecordingIndex]:
    t0 = time.perf_counter()
    idx = RecordingIndex.build(Recording(path))
    idx.ts  # noqa: B018 - finishing the columns and per-track order is part of opening
    return time.perf_counter() - t0, idx


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000, help="recording size (default 1,000,000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seeks", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3, help="runs of (a) and (b); the best of each counts")
    ap.add_argument("--json", action="store_true", help="print only the JSON line")
    args = ap.parse_args()
    say = (lambda *a: None) if args.json else print

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "bench.pasidrec")
        t0 = time.perf_counter()
        n = write_workload(path, args.events, args.seed)
        size = os.path.getsize(path)
        say(f"generated {n:,} events, {size / 1e6:.1f} MB, in {time.perf_counter() - t0:.1f} s")

        gc.collect()
        before = rss_bytes()
        ingest_s, idx = ingest(path)
        bytes_per_event = (rss_bytes() - before) / n
        decode_s, decoded = bare_decode(path)
        assert decoded == n == idx.n, (decoded, n, idx.n)

        rng = random.Random(args.seed)
        start, end = idx.start_ns, idx.end_ns
        times = []
        for _ in range(args.seeks):
            t = rng.randrange(start, end + 1)
            t1 = time.perf_counter()
            idx.state_at(t)
            times.append((time.perf_counter() - t1) * 1000)
        times.sort()
        anomalies = len(idx.anomalies)
        del idx
        gc.collect()
        for _ in range(args.repeat - 1):
            decode_s = min(decode_s, bare_decode(path)[0])
            s, idx = ingest(path)
            ingest_s = min(ingest_s, s)
            del idx
            gc.collect()

    result = {
        "events": n,
        "file_bytes": size,
        "decode_events_per_s": round(n / decode_s),
        "ingest_events_per_s": round(n / ingest_s),
        "ratio": round(decode_s / ingest_s, 3),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "bytes_per_event": round(bytes_per_event, 1),
        "seek_p50_ms": round(times[len(times) // 2], 3),
        "seek_p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 3),
        "anomalies": anomalies,
    }
    say(f"bare decode : {result['decode_events_per_s']:>12,} events/s")
    say(f"ingest      : {result['ingest_events_per_s']:>12,} events/s  (ratio {result['ratio']}, target >= 0.40)")
    say(f"memory      : {result['bytes_per_event']} bytes/event added (target <= 80), "
        f"peak RSS {result['peak_rss_bytes'] / 1e6:.0f} MB")
    say(f"seek        : p50 {result['seek_p50_ms']} ms, p99 {result['seek_p99_ms']} ms (target < 20)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
