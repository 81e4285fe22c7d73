"""The command line as a user runs it: real processes, real files, exit codes and one-line errors."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from explorer.recording import Recording
from explorer.scenarios import bundled_scenarios

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = {s.name: s for s in bundled_scenarios()}


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "explorer.cli.main", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_info_json_has_the_promised_shape() -> None:
    r = cli("info", str(SCENARIOS["03-guest-pasid-iommufd"].recording_path), "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert {"events", "by_kind", "devices", "pasids", "time_range_ns"} <= info.keys()
    assert info["events"] == sum(info["by_kind"].values())
    assert {d["name"] for d in info["devices"]} == {"0000:6a:01.0", "0000:17:00.0"}
    assert info["pasids"] == [1, 5]
    facts = {f["key"]: f for f in info["kernel_facts"]}  # the kernel facts rows for its kernel (6.18)
    assert {"alloc.global-ida", "free.global", "alloc.user"} <= set(facts) and "alloc.ioasid" not in facts
    assert not any(f["blind"] for f in facts.values())
    a, b = info["time_range_ns"]
    assert 0 <= a < b


def test_check_exits_0_when_clean_and_1_with_anomalies_listed_in_json() -> None:
    clean = cli("check", str(SCENARIOS["01-two-processes-one-device"].recording_path), "--json")
    assert clean.returncode == 0 and json.loads(clean.stdout)["anomalies"] == []
    buggy = cli("check", str(SCENARIOS["06-buggy-driver"].recording_path), "--json")
    assert buggy.returncode == 1
    anomalies = json.loads(buggy.stdout)["anomalies"]
    assert {a["kind"] for a in anomalies} == {"free_while_attached", "duplicate_response", "request_after_failure",
                                               "unanswered_group"}
    for a in anomalies:
        assert {"kind", "time_ns", "device", "pasid", "explanation"} <= a.keys() and a["explanation"]
    text = cli("check", str(SCENARIOS["06-buggy-driver"].recording_path))
    assert "PASID freed while still attached" in text.stdout and "evidence #" in text.stdout
    # the same findings, by the same names, as the export's anomaly events (`rule`, `ts_ns`): `jq '.rule'` reads both
    exported = cli("export", str(SCENARIOS["06-buggy-driver"].recording_path), "--to", "jsonl", "--anomalies",
                   "-o", "-")
    rows = [json.loads(x) for x in exported.stdout.splitlines()]
    assert sorted((r["rule"], r["ts_ns"]) for r in rows if "rule" in r) == \
        sorted((a["rule"], a["ts_ns"]) for a in anomalies for _ in range(a["count"]))


def test_check_stale_threshold_is_configurable() -> None:
    path = str(SCENARIOS["04-page-request-groups"].recording_path)
    assert cli("check", path, "--json").returncode == 1
    assert cli("check", path, "--stale-ms", "500", "--json").returncode == 0


def test_the_stale_threshold_also_times_binds_held_past_an_exit_and_help_says_so(tmp_path: Path) -> None:
    """--stale-ms is the one threshold for both lateness findings: a group unanswered, and an exited process's SVA
    binds still held (mm_exit_with_binds; the binds go as its files close, exit_files() after exit_mm(),
    kernel/exit.c 5.18+)."""
    path = tmp_path / "late.yaml"
    path.write_text('title: t\nkernel: "6.18"\ndevices:\n  - {name: d0}\nactors:\n  app: {pid: 10}\nscript:\n'
                    "  - at: 0\n    bind: {actor: app, device: d0}\n  - at: 1ms\n    exit: {actor: app}\n"
                    "  - at: 51ms\n    unbind: {actor: app, device: d0}\n")
    assert cli("check", str(path), "--json").returncode == 0  # 50 ms: within the default 100
    late = cli("check", str(path), "--stale-ms", "20", "--json")
    assert [a["kind"] for a in json.loads(late.stdout)["anomalies"]] == ["mm_exit_with_binds"]
    words = " ".join(cli("check", "--help").stdout.split())
    assert "page-request groups unanswered this long, and processes that exited with SVA binds held on" in words


@pytest.mark.parametrize("args, words", [
    (["check", "no-such-file.pasidrec"], "no such file"),
    (["info", "README.md"], "not a PASID Explorer recording"),
    (["simulate", "pyproject.toml"], "pyproject.toml:2:1: invalid YAML"),
])
def test_unreadable_input_is_exit_2_with_one_line_naming_the_file(args: list[str], words: str) -> None:
    r = cli(*args)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and words in r.stderr and args[-1] in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("device, words", [("zz", "not a PCI address"), ("0000:ff:1f.7", "no such PCI device")])
def test_record_refuses_a_mistyped_device_before_capturing(tmp_path: Path, device: str, words: str) -> None:
    r = cli("record", "-o", str(tmp_path / "x.pasidrec"), "--device", device, "--duration", "1")
    assert r.returncode == 2 and words in r.stderr and device in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.pasidrec").exists()


def test_simulate_writes_a_recording_that_check_agrees_with(tmp_path: Path) -> None:
    src = SCENARIOS["05-exhaustion-narrow-device"].yaml_path
    r = cli("simulate", str(src), "-o", str(tmp_path / "x.pasidrec"))
    assert r.returncode == 0 and "space_exhausted" in r.stdout
    assert Recording(tmp_path / "x.pasidrec").complete
    r = cli("simulate", str(src), cwd=tmp_path)  # default output name, in the current directory
    assert (tmp_path / f"{src.stem}.pasidrec").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text("title: t\ndevices: []\nscript:\n  - at: 1ms\n    bind: {actor: ghost, device: d}\n")
    r = cli("simulate", str(bad))
    assert r.returncode == 2 and f"{bad}:5: " in r.stderr and "unknown actor" in r.stderr


def test_generate_is_seeded_and_check_finds_only_the_planted_slow_responses(tmp_path: Path) -> None:
    a, b = tmp_path / "a.pasidrec", tmp_path / "b.pasidrec"
    for p in (a, b):
        assert cli("generate", "--events", "300000", "--seed", "4", "--slow-every", "400", "-o", str(p)).returncode == 0
    assert list(Recording(a).iter_rows()) == list(Recording(b).iter_rows())
    r = cli("check", str(a), "--json")
    assert r.returncode == 1
    assert {x["kind"] for x in json.loads(r.stdout)["anomalies"]} == {"unanswered_group"}


def test_every_command_has_help_with_examples() -> None:
    top = cli("--help")
    assert top.returncode == 0 and "A PASID comes from the kernel's allocator" in top.stdout
    commands = [c for c in ("info", "check", "simulate", "generate", "scenarios") if c in top.stdout]
    assert len(commands) == 5
    for c in commands:
        r = cli(c, "--help")
        assert r.returncode == 0 and "examples:" in r.stdout, c


def test_a_command_loads_its_own_module_only() -> None:
    """`import` starts without the other commands' modules (the index, the simulator, the probes: 0.13-0.16 s of
    every command's start-up); a mistyped command is still told every command there is."""
    code = ("import sys\nfrom explorer.cli.main import main\ntry:\n    main(['import', '--help'])\n"
            "except SystemExit:\n    pass\nprint(' '.join(sorted(sys.modules)))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "examples:" in r.stdout, r.stderr
    loaded = set(r.stdout.split())
    assert "explorer.cli.commands.import_cmd" in loaded
    assert not loaded & {"explorer.cli.commands.check", "explorer.index", "explorer.simulator", "probes.capture"}
    typo = cli("imprt", "x")
    assert typo.returncode == 2 and all(c in typo.stderr for c in ("'import'", "'check'", "'replay'", "'lab'"))


@pytest.mark.parametrize("command", ["import", "simulate", "export", "merge"])
def test_a_command_never_writes_over_what_it_reads(tmp_path: Path, command: str) -> None:
    """`-o` naming the input (or a link to it) is refused in one line, and the input is left as it was: an import,
    simulation, export or merge once replaced its own source."""
    scenario = SCENARIOS["04-page-request-groups"]
    source = {"import": tmp_path / "dmesg.txt", "simulate": tmp_path / "s.yaml"}.get(command, tmp_path / "a.pasidrec")
    if command == "import":
        source.write_text("[    1.000000] DMAR: DRHD: handling fault status reg 2\n")
    else:
        source.write_bytes((scenario.yaml_path if command == "simulate" else scenario.recording_path).read_bytes())
    (tmp_path / "link").symlink_to(source)
    before = source.read_bytes()
    args = {"import": ["import", str(source), "-o", str(tmp_path / "link")],
            "simulate": ["simulate", str(source), "-o", str(source)],
            "export": ["export", str(tmp_path / "link"), "--to", "jsonl", "-o", str(source)],
            "merge": ["merge", "-o", str(source), str(source), str(SCENARIOS["06-buggy-driver"].recording_path)]}
    r = cli(*args[command], cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "is also the input" in r.stderr, r.stderr
    assert source.read_bytes() == before


@pytest.mark.parametrize("command", ["import", "simulate", "generate", "merge"])
def test_a_recording_that_is_there_is_kept_unless_forced(tmp_path: Path, command: str) -> None:
    """Every command that writes a recording keeps a file that is there and not empty, as `record` does: `import`,
    `simulate` and `generate` once replaced a capture given as -o (exit 0), and `import host.log` alone wrote over
    host.pasidrec. One line naming the file, exit 2; --force replaces it; an empty file is simply written."""
    log = tmp_path / "host.log"
    log.write_text("[    1.000000] DMAR: DRHD: handling fault status reg 2\n")
    guest = str(SCENARIOS["06-buggy-driver"].recording_path)
    args = {"import": ["import", str(log)],  # (no -o: host.pasidrec, here)
            "simulate": ["simulate", str(SCENARIOS["04-page-request-groups"].yaml_path), "-o", "host.pasidrec"],
            "generate": ["generate", "--events", "50", "-o", "host.pasidrec"],
            "merge": ["merge", "-o", "host.pasidrec", str(SCENARIOS["04-page-request-groups"].recording_path),
                      guest, "--name", f"{guest}=g", "--offset", "g=+0s"]}[command]
    capture = tmp_path / "host.pasidrec"
    capture.write_bytes(SCENARIOS["01-two-processes-one-device"].recording_path.read_bytes())
    before = capture.read_bytes()
    r = cli(*args, cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == "" and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("pasid-explorer: host.pasidrec: the file is there already") and "--force" in r.stderr
    assert capture.read_bytes() == before
    forced = cli(*args, "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert capture.read_bytes() != before and Recording(str(capture)).header.title != "Two processes, one device"
    capture.write_bytes(b"")  # (a name made ready, or a start that was killed: nothing to keep)
    assert cli(*args, cwd=tmp_path).returncode == 0 and capture.stat().st_size > 0


@pytest.mark.parametrize("force", [False, True])
def test_a_capture_made_under_the_name_during_an_import_is_kept_unless_forced(tmp_path: Path, force: bool) -> None:
    """`import` checks the name before its work and puts the finished file in place at the end: a capture started
    under that name meanwhile (here: while the import waits on its standard input) is kept, in one line, exit 2
    (the finished import once replaced it with exit 0); --force replaces it."""
    cmd = [sys.executable, "-m", "explorer.cli.main", "import", "-", "-o", "host.pasidrec", *(["--force"] * force)]
    p = subprocess.Popen(cmd, cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    assert p.stdin is not None
    p.stdin.write("[    1.000000] DMAR: DRHD: handling fault status reg 2\n")
    p.stdin.flush()
    for _ in range(600):  # (until the import has its file open beside the name)
        if any(tmp_path.glob(".host.pasidrec.*.part")):
            break
        time.sleep(0.05)
    capture = tmp_path / "host.pasidrec"
    capture.write_bytes(SCENARIOS["01-two-processes-one-device"].recording_path.read_bytes())
    out, err = p.communicate("[    2.000000] DMAR: DRHD: handling fault status reg 2\n", timeout=120)
    if force:
        assert p.returncode == 0 and Recording(str(capture)).header.source.startswith("import"), err
    else:
        assert p.returncode == 2 and err.count("\n") == 1, err
        assert err.startswith("pasid-explorer: host.pasidrec: the file is there already and is kept")
        assert capture.read_bytes() == SCENARIOS["01-two-processes-one-device"].recording_path.read_bytes()
    assert not list(tmp_path.glob(".*.part"))


@pytest.mark.parametrize("command", ["simulate", "generate"])
def test_an_output_that_is_a_dangling_link_is_written_where_it_leads(tmp_path: Path, command: str) -> None:
    """`-o link`, the link leading to no file yet: the recording is written where it leads (the O_EXCL open once
    refused the link, then failed with 'No such file or directory'); the file written is then kept as any other,
    and a link into a missing folder says where it leads."""
    args = {"simulate": ["simulate", str(SCENARIOS["04-page-request-groups"].yaml_path)],
            "generate": ["generate", "--events", "50"]}[command]
    (tmp_path / "link").symlink_to("target.pasidrec")
    r = cli(*args, "-o", "link", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "link").is_symlink() and Recording(str(tmp_path / "target.pasidrec")).event_count > 0
    before = (tmp_path / "target.pasidrec").read_bytes()
    again = cli(*args, "-o", "link", cwd=tmp_path)
    assert again.returncode == 2 and "link: the file is there already and is kept" in again.stderr, again.stderr
    assert (tmp_path / "target.pasidrec").read_bytes() == before
    (tmp_path / "lost").symlink_to("no-folder/x.pasidrec")
    lost = cli(*args, "-o", "lost", cwd=tmp_path)
    assert lost.returncode == 2 and lost.stderr == (f"pasid-explorer: lost: cannot write the recording at "
                                                    f"'{tmp_path / 'no-folder/x.pasidrec'}', where the link leads: "
                                                    "No such file or directory\n")


def test_a_binary_trace_goes_down_a_pipe_as_it_goes_to_a_file(tmp_path: Path) -> None:
    """`export --to perfetto -o -` into a pipe writes the same trace as into a file (it once stopped with an internal
    error: the CLI's escaping stdout has no byte stream)."""
    rec = str(SCENARIOS["04-page-request-groups"].recording_path)
    piped = subprocess.run([sys.executable, "-m", "explorer.cli.main", "export", rec, "--to", "perfetto", "-o", "-"],
                           cwd=ROOT, capture_output=True, timeout=120)
    assert piped.returncode == 0, piped.stderr
    assert cli("export", rec, "--to", "perfetto", "-o", str(tmp_path / "t.pftrace")).returncode == 0
    assert piped.stdout == (tmp_path / "t.pftrace").read_bytes() and len(piped.stdout) > 1000


@pytest.mark.parametrize("args, words", [
    (["check", "{rec}", "--stale-ms", "-5"], "--stale-ms: expected a number above 0, got '-5'"),
    (["check", "{rec}", "--stale-ms", "nan"], "--stale-ms: expected a number above 0, got 'nan'"),
    (["check", "{rec}", "--jobs", "0"], "--jobs/-j: expected a whole number of at least 1, got '0'"),
    (["replay", "{rec}", "--stale-ms", "0"], "--stale-ms: expected a number above 0, got '0'"),
    (["check", "{rec}", "--stale-ms", "1e303"], "--stale-ms: expected at most 9.2e12 (292 years), got '1e303'"),
    (["check", "{rec}", "--stale-ms", "1e-300"], "--stale-ms: expected at least 0.000001 (1 ns, the clocks' unit)"),
    (["merge", "-o", "x.pasidrec", "{rec}", "{rec}", "--offset", "g=+1s", "--offset", "g=+5s"],
     "--offset g: given twice (g=+1s and g=+5s)"),
    (["replay", "{rec}", "--offset", "bogus", "--name", "nosuch.pasidrec=x"],
     "--offset, --name: these align several recordings on one timeline"),
    (["generate", "-o", "x.pasidrec", "--slow-every", "-3"], "--slow-every: expected a whole number of at least 0"),
    (["generate", "-o", "x.pasidrec", "--events", "0"], "--events: expected a whole number of at least 1"),
])
def test_a_number_that_means_nothing_is_refused_before_any_work(tmp_path: Path, args: list[str], words: str) -> None:
    """A negative age once reported every answer as 'waited more than -5.000 ms'; a count of 0 or less was taken
    silently."""
    rec = str(SCENARIOS["06-buggy-driver"].recording_path)
    r = cli(*(a.format(rec=rec) for a in args), cwd=tmp_path)
    assert r.returncode == 2 and words in r.stderr, r.stderr
    assert not (tmp_path / "x.pasidrec").exists()


def _on_a_terminal(args: list[str], cwd: Path, *, stderr_to_file: bool = False) -> tuple[int, bytes, str]:
    """Run the CLI with standard input and output (and error, unless `stderr_to_file`) on a pseudo-terminal, as
    in a user's shell: its exit status, what reached the terminal and what went to the file."""
    main, tty = os.openpty()
    err = subprocess.PIPE if stderr_to_file else tty
    p = subprocess.Popen([sys.executable, "-m", "explorer.cli.main", *args], cwd=cwd, stdin=tty, stdout=tty,
                         stderr=err, env=os.environ | {"PYTHONPATH": str(ROOT)})
    os.close(tty)
    shown = bytearray()
    deadline = time.monotonic() + 60
    try:
        while select.select([main], [], [], max(deadline - time.monotonic(), 0))[0]:
            if not (chunk := os.read(main, 65536)):
                break
            shown += chunk
    except OSError:  # (the terminal's other end closed: the process is gone)
        pass
    finally:
        os.close(main)
        p.kill()  # (one that still runs, waiting for keys, fails the test rather than hang it)
    to_file = p.stderr.read().decode() if p.stderr is not None else ""
    return p.wait(), bytes(shown), to_file


def test_export_s_progress_redraws_one_terminal_line(tmp_path: Path) -> None:
    """It was escaped as text (`\\x0d\\x1b[K...`), dozens of lines of it, where import's redraws in place."""
    rec = tmp_path / "big.pasidrec"
    assert cli("generate", "--events", "300000", "-o", str(rec)).returncode == 0
    code, shown, _ = _on_a_terminal(["export", str(rec), "--to", "jsonl", "-o", str(tmp_path / "o.jsonl")], tmp_path)
    assert code == 0 and b"\rexporting" in shown.replace(b"\x1b[K", b""), shown[:300]
    assert b"\\x0d" not in shown and b"\\x1b" not in shown


def test_the_explorer_with_its_error_stream_redirected_says_so_on_the_terminal(tmp_path: Path) -> None:
    """The screen is drawn on standard error: `replay rec 2>err.log` once left the terminal blank and filled the
    file with the screen, and only a blind `q` ended it."""
    rec = str(SCENARIOS["01-two-processes-one-device"].recording_path)
    code, _, to_file = _on_a_terminal(["replay", rec], tmp_path, stderr_to_file=True)
    assert code == 2 and to_file.count("\n") == 1 and "shows its screen on a terminal" in to_file


def test_several_files_may_stand_between_options(tmp_path: Path) -> None:
    """`merge -o out host --name guest=g0 guest` was refused ('unrecognized arguments: guest'): argparse stops
    taking the files at the first option. An option that is not one is still refused."""
    host, guest = (str(SCENARIOS[s].recording_path) for s in ("03-guest-pasid-iommufd", "07-lost-events"))
    r = cli("merge", "-o", str(tmp_path / "m.pasidrec"), host, "--name", f"{guest}=g0", "--offset", "g0=+0s", guest)
    assert r.returncode == 0 and [m.name for m in Recording(tmp_path / "m.pasidrec").machines][1] == "g0", r.stderr
    r = cli("check", host, "--bogus", guest)
    assert r.returncode == 2 and "unrecognized arguments: --bogus" in r.stderr


@pytest.mark.parametrize("args", [["replay", "{rec}"], []])
def test_the_explorer_without_a_terminal_says_so_rather_than_hang(args: list[str]) -> None:
    """With input and output redirected it once wrote its screen into the file and waited for keys forever."""
    rec = str(SCENARIOS["01-two-processes-one-device"].recording_path)
    r = subprocess.run([sys.executable, "-m", "explorer.cli.main", *(a.format(rec=rec) for a in args)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and r.stdout == "" and r.stderr.count("\n") == 1
    assert "shows its screen on a terminal" in r.stderr



def test_a_bad_scenario_given_to_the_explorer_without_a_terminal_is_told_as_the_yaml_error(tmp_path: Path) -> None:
    """`replay bad.yaml` in a script said only that there was no terminal: the YAML error is what to fix."""
    (tmp_path / "bad.yaml").write_text("title: [unclosed\n")
    r = subprocess.run([sys.executable, "-m", "explorer.cli.main", "replay", "bad.yaml"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "bad.yaml:2:1: invalid YAML" in r.stderr, r.stderr
    assert "terminal" not in r.stderr


def test_counts_of_one_are_said_in_the_singular_and_a_scenario_has_no_chunks(tmp_path: Path) -> None:
    """`import` printed "1 lines parsed"; `info` on a scenario .yaml "..., - chunks" (it has no file of chunks)."""
    (tmp_path / "one.log").write_text("[    1.000000] DMAR: DRHD: handling fault status reg 2\n")
    r = cli("import", "one.log", cwd=tmp_path)
    assert r.returncode == 0 and "from 1 line of one.log" in r.stdout and "  1 line parsed" in r.stdout, r.stdout
    info = cli("info", str(SCENARIOS["01-two-processes-one-device"].yaml_path))
    assert info.returncode == 0 and "chunk" not in info.stdout and "events over 23.002 ms (scenario clock)\n" in \
        info.stdout, info.stdout


def test_check_s_text_folds_the_kernel_facts_into_one_line_before_the_findings() -> None:
    """`check` printed every kernel fact row (13 for 6.18) before its first finding; `info` still lists them."""
    rec = str(SCENARIOS["11-era-sva-ida"].recording_path)  # 6.5: its allocation is a blind spot
    out = cli("check", rec).stdout
    rules = next(i for i, x in enumerate(out.splitlines()) if x.startswith("  rules: kernel 6.5: "))
    assert out.splitlines()[rules + 1] == ("    9 kernel facts ('pasid-explorer info' lists them); blind spots, which "
                                           "no hook sees: alloc.sva-ida")
    assert "bind.sva (5.2+)" not in out and "bind.sva (5.2+)" in cli("info", rec).stdout
