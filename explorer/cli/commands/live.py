"""`live`: the explorer UI fed by a running capture, optionally recording what it shows."""

from __future__ import annotations

import argparse
import shutil
import signal
from types import FrameType

from probes.capture import Capture
from probes.recorder import RecordingTee

from ...errors import ExplorerError
from ...index import RecordingIndex
from ...live_spill import OutputSpill
from ._common import need_terminal
from .record import add_capture_arguments, capture_options

ORDER = 72


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "live", help="open the explorer on this host's live PASID activity (root)",
        description="Open the explorer fed by a live capture of this host (what 'pasid-explorer probes' says it "
                    "can see): timelines grow as events arrive and the cursor follows the present until you move "
                    "it; the simulated allocator model and its checks run on the live stream. With -o the same "
                    "events are recorded as by 'pasid-explorer record', and the recording is closed when you "
                    "quit.",
        epilog="examples:\n  sudo pasid-explorer live\n  sudo pasid-explorer live -o session.pasidrec\n"
               "  sudo pasid-explorer live --pid $(pidof qemu-system-x86_64) --layout compact",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--output", help="also record to this file (.pasidrec)")
    p.add_argument("--layout", help="layout name (debug, teaching, compact) or a layout .yaml file (default: "
                                    "debug, or compact on a terminal smaller than 120x36)")
    add_capture_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        from ...tui.app import ExplorerApp, default_layout, run_explorer
        from ...tui.screen_layout import load_layout
    except ImportError as e:
        raise ExplorerError(f"the explorer UI is not available in this installation ({e})") from None
    layout = load_layout(args.layout) if args.layout else None  # a bad layout fails before the probes load
    need_terminal("live")
    capture = Capture(capture_options(args))
    source: Capture | RecordingTee = (capture if args.output is None else
                                      RecordingTee(capture, args.output, replace=args.force))
    # older rows are read back from the -o file itself; without one (or one that cannot be read), a temporary file
    spill = OutputSpill.of(source.writer) if isinstance(source, RecordingTee) else None
    index = RecordingIndex(source.header, spill=spill)
    app = ExplorerApp(index, live=source, layout=layout or load_layout(
        default_layout(index, tuple(shutil.get_terminal_size()))))
    ended: list[str] = []
    if isinstance(source, RecordingTee):  # a write that fails (a full disk) ends the session with one line, as
        # it ends `record`, rather than leave a screen that silently stops growing
        source.on_failure = lambda: app.call_from_thread(app.exit)

    def terminated(_signum: int, _frame: FrameType | None) -> None:
        ended.append("terminated")  # SIGTERM: leave the UI as `q` would, so the recording gets its footer
        app.exit()

    signal.signal(signal.SIGTERM, terminated)
    try:
        run_explorer(app)
    finally:
        if isinstance(source, RecordingTee):
            source.close(ended[0] if ended else None)
        else:
            source.close()
    if isinstance(source, RecordingTee):
        print(f"{args.output}: {source.writer.events_written:,} events recorded")
    return 0
