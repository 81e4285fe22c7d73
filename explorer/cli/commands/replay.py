"""`replay`: open the explorer UI on a recording or a teaching scenario (the default command)."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from ...errors import ExplorerError
from ...loading import FIRST_SCREEN
from ...scenarios import bundled_scenarios
from ._common import milliseconds, need_terminal, open_with_progress
from .merge import ALIGNMENT_HELP, LINK_WINDOW, add_machine_arguments, merge_files

ORDER = 5


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "replay", help="explore a recording in the terminal UI (default: the first teaching scenario)",
        description="Open the explorer on a recording (.pasidrec) or a teaching scenario (.yaml, simulated on the "
                    "fly): one timeline row per device, opening into one row per PASID, plus the allocator's "
                    "row; beside it the simulated allocator's state at the cursor, the selected event explained, "
                    "the anomalies and, for scenarios, the lesson. Press ? inside for every key. Given several "
                    "recordings (a host's first, then its VMs' guests'), it shows them on one timeline, each "
                    "guest's devices and PASIDs under its machine's name, as 'merge' would write them. "
                    + ALIGNMENT_HELP,
        epilog="keys (the essentials):\n"
               "  left/right  move the cursor       +/-  zoom       shift+left/right  pan\n"
               "  up/down     select a row          enter  open/close a device's PASID rows\n"
               "  ] [         next/previous event on the row    . ,  step through all events\n"
               "  n N         next/previous anomaly             m M  next/previous teaching step\n"
               "  space       play/pause  > < speed             /    filter (dev: pasid: pid: comm: kind:)\n"
               "  f S         search event text, next match     ?    help    q  quit\n\n"
               "examples:\n"
               "  pasid-explorer                                          the first teaching scenario\n"
               "  pasid-explorer replay recordings/06-buggy-driver.pasidrec\n"
               "  pasid-explorer replay recordings/scenarios/03-guest-pasid-iommufd.yaml --layout compact\n"
               "  pasid-explorer replay big.pasidrec --layout my-layout.yaml\n"
               "  pasid-explorer replay host.pasidrec guest.pasidrec           a VM's guest beside its host\n"
               "  pasid-explorer replay host.pasidrec guest.pasidrec --offset guest=+2.5s",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="*", metavar="FILE",
                   help="recording or scenario to open (default: the first bundled scenario); several recordings: "
                        "the host's first, then its guests', on one timeline")
    p.add_argument("--layout", help="layout name (debug, teaching, compact) or a layout .yaml file (default: "
                                    "compact below 120x36, else teaching for scenarios and debug otherwise)")
    p.add_argument("--stale-ms", type=milliseconds, metavar="MS",
                   help="age at which an unanswered page-request group, or a process's SVA binds held on past its "
                        "exit, is reported (default 100)")
    add_machine_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if len(args.files) > 1:
        with tempfile.TemporaryDirectory(prefix="pasid-explorer-merge-") as tmp:
            path = str(Path(tmp) / "merged.pasidrec")
            first, *rest = merge_files(args, path)
            print("\n".join([f"pasid-explorer: {first}", *rest]), file=sys.stderr)
            return _explore(args, path, " + ".join(args.files))
    aligning = [o for o, given in (("--offset", args.offset), ("--name", args.name),
                                   ("--link-window", args.link_window != LINK_WINDOW)) if given]
    if aligning:  # (taken and ignored, a typo in one went unnoticed)
        raise ExplorerError(f"{', '.join(aligning)}: these align several recordings on one timeline (a host's, "
                            "then its guests'); with one there is nothing to align")
    path = args.files[0] if args.files else None
    if path is None:
        scenarios = bundled_scenarios()
        if not scenarios:
            raise ExplorerError("no bundled scenarios found; give a recording to open")
        first = scenarios[0]
        path = str(first.recording_path if first.recording_path.exists() else first.yaml_path)
    return _explore(args, path, path)


def _explore(args: argparse.Namespace, path: str, source_name: str) -> int:
    from ...tui.app import ExplorerApp, default_layout, run_explorer
    from ...tui.screen_layout import load_layout

    layout = load_layout(args.layout) if args.layout else None  # a bad layout fails before the long indexing
    # the input before the terminal: a scenario's YAML error or a corrupt recording is the news, wherever it runs
    # (only the first screen's events are indexed here, so a missing terminal is still told at once)
    index = open_with_progress(path, args.stale_ms, model=False, first=FIRST_SCREEN)
    try:
        need_terminal("replay")
    except ExplorerError:
        index.close()
        raise
    if layout is None:
        layout = load_layout(default_layout(index, tuple(shutil.get_terminal_size())))
    run_explorer(ExplorerApp(index, layout=layout, source_name=source_name))
    return 0
