"""Entry point: builds the parser from the modules in `commands/` (only the named command's, when the command line
names one) and turns project errors into one line."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from .. import __version__
from ..allocator import return_big_buffers
from ..errors import INTERNAL_ERROR, ExplorerCrashed, ExplorerError
from ..text import line, neutral
from . import commands

DESCRIPTION = """\
Watch how a Linux host hands out and uses PCIe PASIDs (Process Address Space IDs).

A PASID comes from the kernel's allocator (SVA: a process's first bind allocates its mm's one PASID, later binds
reuse it; kernel drivers take theirs from the same IDA), or from user space: a VMM attaches a device at the
number its guest chose, through iommufd/VFIO (6.15+), and nothing allocates it. Faults, page-request groups and
responses hang off a (device, PASID) pair. PASID Explorer captures these events on a live host, keeps them in
recordings, replays them in a terminal UI beside a simulated model of the kernel's allocator, and checks the
model's invariants.

With no command it opens the explorer on the first bundled teaching scenario."""

EPILOG = """\
examples:
  pasid-explorer                                   explore the first teaching scenario
  pasid-explorer scenarios                         list the bundled teaching scenarios
  pasid-explorer replay recordings/05-exhaustion-narrow-device.pasidrec
  pasid-explorer simulate recordings/scenarios/01-two-processes-one-device.yaml -o two.pasidrec
  pasid-explorer check two.pasidrec --json         run the invariant checks (exit 1 on anomalies)
  pasid-explorer export two.pasidrec --to jsonl -o -

run 'pasid-explorer COMMAND --help' for each command's options."""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of `command` alone where a module of that name (or `<command>_cmd`)
    registers it: each command module imports what its command needs, and importing them all (the index, the
    simulator, the probes, the lab) cost every command 0.13-0.16 s of start-up that `import` never used."""
    parser = argparse.ArgumentParser(
        prog="pasid-explorer", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    names = [m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_")]
    if command is not None:
        own = next((n for n in (command, f"{command}_cmd") if n in names), None)
        if own is not None:
            importlib.import_module(f"{commands.__name__}.{own}").register(sub)
        return parser if command in sub.choices else build_parser()  # (else argparse's error lists them all)
    modules = [importlib.import_module(f"{commands.__name__}.{n}") for n in names]
    for module in sorted(modules, key=lambda m: (getattr(m, "ORDER", 50), m.__name__)):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Its stdout and stderr escape control characters (text.Neutral): whatever a recording, a
    log or a process name holds, it cannot drive the user's terminal."""
    return_big_buffers()
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = neutral(out), neutral(err)
    try:
        return _run(argv)
    finally:
        sys.stdout, sys.stderr = out, err


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line, where a command taking several files also takes them between its options
    (`merge -o both.pasidrec host.pasidrec --name guest.pasidrec=g0 guest.pasidrec`): argparse alone stops
    taking them at the first option and calls the rest unrecognized."""
    args, extra = parser.parse_known_args(argv)
    several = next((k for k in ("files", "file") if isinstance(getattr(args, k, None), list)), None)
    if extra and several is not None and not any(x.startswith("-") and x != "-" for x in extra):
        getattr(args, several).extend(extra)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _run(argv: Sequence[str] | None) -> int:
    given = sys.argv[1:] if argv is None else argv
    parser = build_parser(given[0] if given and not given[0].startswith("-") else None)
    args = _parse(parser, argv)
    if args.command is None:
        args = parser.parse_args(["replay"])
    try:
        return int(args.func(args) or 0)
    except ExplorerError as e:
        print(f"pasid-explorer: {line(str(e))}", file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        print("pasid-explorer: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        sys.stderr.close()  # the reader of our output went away (| head): not an error worth a message
        return 0
    except OSError as e:  # an output path in a missing folder, a directory given as a file, a full disk
        where = f"{e.filename}: " if e.filename else ""
        print(f"pasid-explorer: {line(where + str(e.strerror or e))}", file=sys.stderr)
        return ExplorerError.exit_status
    except ExplorerCrashed:
        print("pasid-explorer: internal error in the explorer (its traceback is above); please report it with the "
              "input that caused it", file=sys.stderr)
        return INTERNAL_ERROR
    except Exception as e:  # a bug: one line, a way to report it, and a status no script reads as success
        frame = traceback.extract_tb(e.__traceback__)[-1]
        print(f"pasid-explorer: internal error: {type(e).__name__}: {line(str(e))[:200]} "
              f"(at {Path(frame.filename).name}:{frame.lineno}); please report it with the input that caused it "
              f"(PASID_EXPLORER_TRACEBACK=1 shows the traceback)", file=sys.stderr)
        if os.environ.get("PASID_EXPLORER_TRACEBACK"):
            traceback.print_exc()
        return INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
