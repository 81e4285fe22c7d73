"""How fast PASID Explorer opens a big recording, against a bare msgpack decode of the same events, and how
much disk and memory each event costs; at each of --events' sizes, so that growth shows.

Generates a seeded N-event recording (not timed), and beside it the same events as a bare msgpack stream of
compact rows (not timed): seven fields, [ts_ns, kind, device, pasid, cpu, pid, comm], with kind, device and comm
as small integer codes, 4,096 rows to an array. Then in one run times:
  (a) the baseline: reading that stream and decoding every row with msgpack into Python lists, nothing else;
  (b) ingest: PASID Explorer opening the recording and building what the explorer shows first (the per-device /
      per-PASID index: times, kinds, tracks and per-track order), the model left to run behind it as the explorer
      runs it;
  (c) the same open with the model replayed too (what `check` does; the model pass is issue 17 item 1's);
  (d) the simulator's full state at 1,000 random times (seek).
(a), (b) and (c) run with the cyclic garbage collector off, as the explorer's indexer does, and each is the best
of --repeat runs, interleaved, so that machine noise hits them alike. `ratio` is (b)'s rate over (a)'s (target
>= 0.6), `disk_bytes_per_event` the recording's size over its events (target <= 30), `bytes_per_event` the
resident memory the open index with its model adds (target <= 48). The last line is one JSON object: the figures at
the largest size, with `sizes` listing them at every size.
"""

from __future__ import annotations

import gc
import os
import random
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _sizes import parser, run  # noqa: E402

from explorer.allocator import return_big_buffers  # noqa: E402
from explorer.index import RecordingIndex  # noqa: E402
from explorer.recording import Recording  # noqa: E402
from explorer.workload import write_workload  # noqa: E402


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def compact_stream(path: str, out: str) -> int:
    """Write the recording's events as the baseline's compact rows; returns the stream's size in bytes."""
    codes: dict[object, int] = {}
    code = lambda v: codes.setdefault(v, len(codes))  # noqa: E731
    packer = msgpack.Packer(use_bin_type=True)
    with Recording(path) as rec, open(out, "wb") as f:
        for i in range(len(rec.chunks)):
            rows = rec.chunk_rows(i)
            f.write(packer.pack([[r[0], code(r[1]), code(r[2]), r[3], r[4], r[5], code(r[6])] for r in rows]))
    return os.path.getsize(out)


def bare_decode(stream: str) -> tuple[float, int]:
    """The baseline: the compact stream read and every row msgpack-decoded, nothing else done with them."""
    gc.disable()
    t0 = time.perf_counter()
    n = 0
    with open(stream, "rb") as f:
        for rows in msgpack.Unpacker(f, read_size=1 << 20, max_buffer_size=1 << 30):
            n += len(rows)
    elapsed = time.perf_counter() - t0
    gc.enable()
    return elapsed, n


def ingest(path: str, model: bool) -> tuple[float, RecordingIndex]:
    t0 = time.perf_counter()
    idx = RecordingIndex.build(Recording(path), model=model)
    idx.ts  # noqa: B018 - finishing the columns and per-track order is part of opening
    return time.perf_counter() - t0, idx


def measure(n_events: int, seed: int, seeks: int, repeat: int, say: Callable[..., None]) -> dict[str, Any]:
    """Every figure at one size."""
    with tempfile.TemporaryDirectory() as tmp:
        path, stream = str(Path(tmp) / "bench.pasidrec"), str(Path(tmp) / "bench.msgpack")
        t0 = time.perf_counter()
        n = write_workload(path, n_events, seed)
        size = os.path.getsize(path)
        stream_size = compact_stream(path, stream)
        say(f"generated {n:,} events, {size / 1e6:.1f} MB ({size / n:.1f} B/event; the compact stream "
            f"{stream_size / n:.1f}), in {time.perf_counter() - t0:.1f} s")

        gc.collect()
        before = rss_bytes()
        open_s, idx = ingest(path, model=False)
        columns_bytes = (rss_bytes() - before) / n
        del idx
        gc.collect()
        before = rss_bytes()
        full_s, idx = ingest(path, model=True)
        bytes_per_event = (rss_bytes() - before) / n
        decode_s, decoded = bare_decode(stream)
        assert decoded == n == idx.n, (decoded, n, idx.n)

        rng = random.Random(seed)
        start, end = idx.start_ns, idx.end_ns
        times = []
        for _ in range(seeks):
            t = rng.randrange(start, end + 1)
            t1 = time.perf_counter()
            idx.state_at(t)
            times.append((time.perf_counter() - t1) * 1000)
        times.sort()
        anomalies = len(idx.anomalies)
        del idx
        gc.collect()
        for _ in range(repeat - 1):
            decode_s = min(decode_s, bare_decode(stream)[0])
            s, idx = ingest(path, model=False)
            open_s = min(open_s, s)
            del idx
            gc.collect()
            s, idx = ingest(path, model=True)
            full_s = min(full_s, s)
            del idx
            gc.collect()
    result = {
        "events": n,
        "file_bytes": size,
        "disk_bytes_per_event": round(size / n, 2),
        "compact_stream_bytes_per_event": round(stream_size / n, 2),
        "decode_events_per_s": round(n / decode_s),
        "ingest_events_per_s": round(n / open_s),
        "ratio": round(decode_s / open_s, 3),
        "ingest_with_model_events_per_s": round(n / full_s),
        "ratio_with_model": round(decode_s / full_s, 3),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "bytes_per_event": round(bytes_per_event, 1),
        "index_bytes_per_event": round(columns_bytes, 1),
        "seek_p50_ms": round(times[len(times) // 2], 3),
        "seek_p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 3),
        "anomalies": anomalies,
    }
    say(f"bare decode : {result['decode_events_per_s']:>12,} events/s (compact msgpack rows)")
    say(f"ingest      : {result['ingest_events_per_s']:>12,} events/s  (ratio {result['ratio']}, target >= 0.6); "
        f"with the model {result['ingest_with_model_events_per_s']:,} (ratio {result['ratio_with_model']})")
    say(f"disk        : {result['disk_bytes_per_event']} bytes/event (target <= 30)")
    say(f"memory      : {result['bytes_per_event']} bytes/event added with the model (target <= 48), the index "
        f"alone {result['index_bytes_per_event']}; peak RSS {result['peak_rss_bytes'] / 1e6:.0f} MB")
    say(f"seek        : p50 {result['seek_p50_ms']} ms, p99 {result['seek_p99_ms']} ms (target < 20)")
    return result


def main() -> int:
    ap = parser(__doc__, "events", "recording sizes")
    ap.add_argument("--seeks", type=int, default=1000)
    args = ap.parse_args()
    return_big_buffers()  # as every command does (cli/main.py): resident bytes are then the tool's own
    return run(args, args.events, "events", lambda n, say: measure(n, args.seed, args.seeks, args.repeat, say),
               lambda r: f"{r['events']:,}: {1e9 / r['ingest_events_per_s']:.0f} ns/event, "
                         f"{r['bytes_per_event']} B/event")


if __name__ == "__main__":
    sys.exit(main())
