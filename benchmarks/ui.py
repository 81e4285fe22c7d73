"""How fast the explorer opens a big recording and answers each keystroke, driven headless by Textual's Pilot.

Generates a seeded N-event recording (not timed), then starts a fresh Python process that opens it in the explorer
and reports:
  first_screen_s   from that process's start (interpreter, imports, indexing the first chunks' stored columns,
                   app start-up) to the first frame drawn with every panel filled: the timeline's marks, the
                   allocator and the event at the cursor (the start), the indexing's progress; the rest of the
                   file is indexed behind it, as `replay` does;
  first_screen_tiny_s  the same for a 1,000-event recording, in the same run: the part of first_screen_s that
                   is the interpreter, imports and app start-up on this machine, whatever the recording's size;
  indexed_s        from process start until every chunk is indexed (the timeline shows the whole recording);
  model_s          from process start until the model, run in a worker as `replay` does, has replayed the
                   whole recording and its findings (anomalies) and the bars (lifetimes, attachments,
                   outstanding page-request groups) are drawn;
  frame_*_ms       for a mixed sequence of zoom, pan, cursor, row and step keys: from the key's dispatch to the end
                   of the screen update it caused (Pilot's own idle waits between keys are not counted);
  keys_cpu_s       the CPU time the process spent over that key sequence (every thread: the range panel's counts
                   included), which a loaded machine inflates far less than the frames' wall times;
  model_events_per_s  events over the wall time of the model's pass (`run_model`, from its start to its return:
                   its chunks' rows read, decoded, checked and applied, checkpoints left, the helper process that
                   reads chunks ahead started and ended; not the bars it hands the rows to), so work moved to
                   the helper counts only where the pass waits for it;
  resident_bytes_per_event  resident memory once the model is done, less before opening, per event, and
                   model_bytes_per_event the part of it the model added (state, checkpoints, intervals, findings,
                   bars) after the columns;
  seek_p99_ms      the model's full state at 200 random times, 99th percentile;
  live_growth_bytes_per_event  `live`'s resident growth per event once its window of rows is full: the same
                   events fed as a live capture's 5,000-event batches (rows, checks, model, columns, as the
                   screen takes them), from twice LIVE_WINDOW events to the end (at most 400,000 events), in a
                   fresh process; live_growth_unwindowed_bytes_per_event the same with every row held in memory,
                   as before the window (the same-run baseline).
With several sizes (`--events 1000000,10000000`) it prints each size's figures, so growth shows (time and memory
per event should stay flat); the JSON line then holds the last size's figures and `sizes`, every size's.
As a same-run baseline it also times one full-screen frame of an app with an empty recording, so a slow machine
shows up as a slow baseline rather than as a slow explorer. The last line is one JSON object.

Targets at N=1,000,000: first_screen_s < 1.5, frame_median_ms < 50, frame_p95_ms < 100. At N=10,000,000 (issue
17): first_screen_s < 0.5, frame_median_ms < 30, frame_p95_ms < 60, seek_p99_ms < 20, model_events_per_s >= 2M.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from explorer.allocator import return_big_buffers  # noqa: E402

KEYS = ["right", "right", "plus", "plus", "shift+right", "down", "right_square_bracket", "minus", "left",
        "full_stop", "shift+left", "down", "n", "plus", "right", "up", "minus", "minus", "comma", "left"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", default="1000000",
                    help="events in the generated recording; several sizes comma-separated (default 1000000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--size", default="160x48", help="terminal size WxH (default 160x48)")
    ap.add_argument("--layout", default="debug")
    ap.add_argument("--rounds", type=int, default=5, help="times the key sequence is replayed (default 5)")
    ap.add_argument("--json", action="store_true", help="print only the JSON result line")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--started", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--first-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--live-child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--window", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    return_big_buffers()  # as every command does (cli/main.py): the figures are the tool's own
    if args.child:
        asyncio.run(child(args))
        return
    if args.live_child:
        live_child(args.live_child, args.seed, args.window)
        return
    sizes = [int(n.replace("_", "")) for n in args.events.split(",")]
    results = [one_size(args, n) for n in sizes]
    result = dict(results[-1])
    if len(results) > 1:
        result["sizes"] = results
    print(json.dumps(result))


def one_size(args: argparse.Namespace, events: int) -> dict[str, object]:
    """Generate `events` events (not timed), open them in a fresh process, and return its figures."""
    from explorer.workload import write_workload

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "ui-bench.pasidrec")
        if not args.json:
            print(f"generating {events:,} events …", file=sys.stderr)
        write_workload(path, events, args.seed)
        tiny = str(Path(tmp) / "tiny.pasidrec")
        write_workload(tiny, 1_000, args.seed)
        sys.stderr.flush()
        result = run_child(args, path)
        result["first_screen_tiny_s"] = run_child(args, tiny, "--first-only")["first_screen_s"]
    result["events"] = events
    live = min(events, LIVE_EVENTS)
    result["live_growth_bytes_per_event"] = run_live(args, live)
    result["live_growth_unwindowed_bytes_per_event"] = run_live(args, live, 1 << 62)
    if not args.json:
        print(f"{events:,} events: first screen {result['first_screen_s']:.2f} s, model and bars "
              f"{result['model_s']:.2f} s (tiny recording's first screen {result['first_screen_tiny_s']:.2f} s; "
              f"all indexed {result['indexed_s']:.2f} s), model {result['model_events_per_s'] / 1e6:.2f} M events/s; "
              f"frames median {result['frame_median_ms']:.1f} ms, p95 {result['frame_p95_ms']:.1f} ms "
              f"({result['keys_cpu_s']:.2f} s of CPU for the {result['frames']} keys); "
              f"empty-app frame {result['baseline_frame_ms']:.1f} ms; seek p99 {result['seek_p99_ms']:.1f} ms; "
              f"resident {result['resident_bytes_per_event']:.0f} B/event "
              f"(the model's part {result['model_bytes_per_event']:.0f}); live growth past the window "
              f"{result['live_growth_bytes_per_event']:.0f} B/event (every row held: "
              f"{result['live_growth_unwindowed_bytes_per_event']:.0f})")
    return result


def run_child(args: argparse.Namespace, path: str, *extra: str) -> dict[str, object]:
    """Open `path` in a fresh process and return its figures."""
    out = subprocess.run([sys.executable, __file__, "--child", path, "--started", str(time.time()), "--size",
                          args.size, "--layout", args.layout, "--rounds", str(args.rounds), *extra],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.exit(f"benchmark child failed:\n{out.stderr[-3000:]}")
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


LIVE_EVENTS = 400_000


def run_live(args: argparse.Namespace, events: int, window: int | None = None) -> float:
    """`live_child` in a fresh process: the growth per event it measured."""
    extra = [] if window is None else ["--window", str(window)]
    out = subprocess.run([sys.executable, __file__, "--live-child", str(events), "--seed", str(args.seed), *extra],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.exit(f"benchmark live child failed:\n{out.stderr[-3000:]}")
    return float(json.loads(out.stdout.strip().splitlines()[-1])["growth"])


def live_child(events: int, seed: int, window: int | None) -> None:
    """Feed `events` generated rows as `live` takes a capture's batches; print the resident growth per event
    from twice the window to the end."""
    from itertools import islice

    from explorer import index as index_module
    from explorer.index import RecordingIndex
    from explorer.workload import generate_rows, workload_header

    if window is not None:
        index_module.LIVE_WINDOW = window
    start = min(2 * index_module.LIVE_WINDOW, events // 2)
    rows = generate_rows(events, seed)
    index = RecordingIndex(workload_header(events, seed))
    mark = None
    while batch := list(islice(rows, 5_000)):
        index.add_rows(batch)
        index.finish()
        index.ts  # noqa: B018 - the columns, as the screen's next frame reads them
        if mark is None and index.n >= start:
            mark = (index.n, rss_bytes())
    assert mark is not None
    print(json.dumps({"growth": (rss_bytes() - mark[1]) / max(index.n - mark[0], 1)}))


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def time_the_model(index_class: type) -> list[float]:
    """Patch the index so that the wall time of its model's passes, less the bars it hands the rows to, is added
    up in the list returned."""
    spent = [0.0]
    original = index_class.run_model

    def timed(self, *, observe=None, **kwargs):  # type: ignore[no-untyped-def]
        aside = [0.0]

        def watched(rows, positions):  # type: ignore[no-untyped-def]
            t = time.perf_counter()
            observe(rows, positions)
            aside[0] += time.perf_counter() - t

        t0 = time.perf_counter()
        try:
            return original(self, observe=watched if observe is not None else None, **kwargs)
        finally:
            spent[0] += time.perf_counter() - t0 - aside[0]

    index_class.run_model = timed
    return spent


async def child(args: argparse.Namespace) -> None:
    from textual.screen import Screen

    from explorer.index import RecordingIndex
    from explorer.loading import FIRST_SCREEN, open_index
    from explorer.recording import Header
    from explorer.tui.app import ExplorerApp

    rendered: list[float] = []
    original = Screen._compositor_refresh

    def timed(self: Screen) -> None:  # type: ignore[type-arg]
        original(self)
        rendered.append(time.perf_counter())

    Screen._compositor_refresh = timed  # type: ignore[method-assign]
    spent = time_the_model(RecordingIndex)
    width, height = map(int, args.size.split("x"))
    before = rss_bytes()
    index = open_index(args.child, model=False, first=FIRST_SCREEN)  # as `pasid-explorer replay` opens it
    app = ExplorerApp(index, layout=args.layout)
    result: dict[str, float] = {}
    async with app.run_test(size=(width, height)) as pilot:
        while not (app.frame_count and rendered):
            await asyncio.sleep(0.001)
        result["first_screen_s"] = time.time() - args.started
        if args.first_only:
            print(json.dumps(result))
            return
        while not index.indexed_all:
            await asyncio.sleep(0.01)
        result["indexed_s"] = time.time() - args.started
        columns = rss_bytes()  # every column indexed, the model about to start behind it
        while app.session.spans.done < index.n:
            await asyncio.sleep(0.01)
        await pilot.pause()
        result["model_s"] = time.time() - args.started
        resident = rss_bytes()
        result.update(model_events_per_s=index.n / max(spent[0], 1e-9),
                      resident_bytes_per_event=(resident - before) / max(index.n, 1),
                      model_bytes_per_event=(resident - columns) / max(index.n, 1))
        rng = random.Random(args.rounds)
        seeks = []
        for _ in range(200):
            t0 = time.perf_counter()
            index.state_at(rng.randrange(index.start_ns, index.end_ns + 1))
            seeks.append((time.perf_counter() - t0) * 1000)
        result["seek_p99_ms"] = sorted(seeks)[197]
        cpu = time.process_time()
        frames = await drive(pilot, rendered, KEYS * args.rounds)
        result["keys_cpu_s"] = time.process_time() - cpu
    empty = ExplorerApp(RecordingIndex(Header(source="benchmark")), layout=args.layout)
    async with empty.run_test(size=(width, height)) as pilot:
        await pilot.pause()
        base = await drive(pilot, rendered, ["right", "left"] * 10)
    frames.sort()
    ms = [f for f, _ in frames]
    result.update(frame_median_ms=statistics.median(ms), frame_p95_ms=ms[int(len(ms) * 0.95) - 1],
                  frame_max_ms=ms[-1], frames=len(ms), baseline_frame_ms=statistics.median(f for f, _ in base))
    out = {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}
    out["slowest"] = [[key, round(f, 1)] for f, key in frames[-5:]]
    print(json.dumps(out))


async def drive(pilot, rendered: list[float], keys: list[str]) -> list[tuple[float, str]]:  # type: ignore[no-untyped-def]
    """Press each key; a frame lasts from the key's dispatch to the last screen update it caused."""
    frames = []
    for key in keys:
        await pilot.pause()
        t0 = time.perf_counter()
        await pilot.press(key)
        await pilot.pause()
        after = [t for t in rendered if t > t0]
        if after:
            frames.append(((after[-1] - t0) * 1000, key))
    return frames


if __name__ == "__main__":
    main()
