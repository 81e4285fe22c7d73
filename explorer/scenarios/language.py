"""The teaching-scenario language: a topology, some actors, and a timed script of actions.

    title: Two processes, one device
    summary: What the learner should take away.
    kernel: "6.18"                  # which kernel's rules apply (optional; quoted, or YAML reads 6.10 as 6.1)
    stale_after: 100ms              # an unanswered page-request group is reported after this (optional)
    devices:
      - {name: "0000:6a:01.0", width: 20, pri: true, ats: true, driver: idxd}
    actors:
      app-a: {pid: 4100, comm: dsa-copy}
      qemu: {pid: 5200, comm: qemu-system-x86, vm: guest0}
    expect: [use_after_free]        # the anomalies this scenario must show (tests hold it to this)
    script:
      - at: 0
        say: Nothing is bound yet.   # a marker the explorer shows as teaching text
      - after: 1ms
        bind: {actor: app-a, device: "0000:6a:01.0"}

Every step has `at` (absolute) or `after` (relative to the previous step; default 1ms), optionally `say` (and
`title`), and at most one action. ACTIONS declares each action's parameters with their types, ranges and
defaults; the parser checks steps against it, the runner reads parameters through it, and `reference()` renders
it for `simulate --help`, so the three cannot drift apart.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import ScenarioError
from ..events import PASID_SPACE, AllocPath, DomainType, ResponseCode
from ..kernel_facts import FACT_KEYS, HOOK_FACTS, Span, Version, parse_version
from ..simulator import DEFAULT_STALE_NS, RULES
from ..uapi import NUMBERS
from ..uapi_structs import members
from ..units import parse_duration
from ..yaml_lines import LineDict, LineList, load_yaml

U32, U64, S64 = 2**32 - 1, 2**64 - 1, 2**63
MAX_EVENTS = 512  # the most events one `pages` or `count` asks for: a typo must not run for minutes
PAGE = 4096
PID_MAX = 4_194_304  # PID_MAX_LIMIT on 64-bit kernels
DEFAULT_GAP_NS = 1_000_000


# -- parameter types ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Param:
    """One action parameter: what it takes (`text`, used in errors and help), what it means, how a YAML value
    becomes the value the runner uses, and the YAML value used when it is left out."""

    text: str
    doc: str
    convert: Callable[[Any], Any]
    default: Any = None

    def read(self, value: Any) -> Any:
        """The value as the runner uses it; a ValueError saying what was expected when it will not do."""
        try:
            return self.convert(value)
        except (ValueError, TypeError, KeyError):
            raise ValueError(f"expected {self.text}, got {_kind(value)}") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _bound(n: int) -> str:
    """2^20-1 reads better than 1048575."""
    m = abs(n)
    if m < 1 << 16:
        return str(n)
    if m & (m - 1) == 0:
        return f"{'-' if n < 0 else ''}2^{m.bit_length() - 1}"
    if n > 0 and n & (n + 1) == 0:
        return f"2^{n.bit_length()}-1"
    return hex(n)


def _in_range(lo: int, hi: int) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if not _is_int(value) or not lo <= value <= hi:
            raise ValueError
        return value
    return convert


def _int(lo: int, hi: int, doc: str, default: int | None = None) -> Param:
    return Param(f"an integer {_bound(lo)}..{_bound(hi)}", doc, _in_range(lo, hi), default)


def _name(value: Any) -> str:
    """Names of actors and devices: YAML reads a name such as 1234 as a number, which is fine."""
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise ValueError
    return str(value)


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError
    return value


def _text(doc: str, default: str | None = None) -> Param:
    return Param("text", doc, _string, default)


def _choice(choices: Mapping[str, Any], doc: str, default: str) -> Param:
    return Param(f"one of {', '.join(choices)}", doc, choices.__getitem__, default)


_PASID = _in_range(0, PASID_SPACE - 1)


def _pasid_ref(value: Any) -> int | str:
    """A PASID number, or a name the runner resolves when the step runs (an actor's SVA PASID, an `as` name)."""
    return value if isinstance(value, str) else _PASID(value)


def _duration(value: Any) -> int:
    ns = parse_duration(value)
    if ns < 0:
        raise ValueError
    return ns


_ACCESS = {"r": 1, "w": 2, "x": 4, "p": 8}


def _perm(value: Any) -> int:
    """'rw' -> the Perm bits 3."""
    if not isinstance(value, str) or not set(value) <= _ACCESS.keys():
        raise ValueError
    return sum(_ACCESS[ch] for ch in set(value))


_ARG = _in_range(-S64, U64)


def _struct(value: Any) -> dict[str, int]:
    """An ioctl's decoded argument struct: field names to integers, as a capture would decode them."""
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ValueError
    return {k: _ARG(v) for k, v in value.items()}


def _ioctl(value: Any) -> str:
    if value not in NUMBERS:
        raise ValueError
    return value


# -- the actions ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Action:
    """An action: what it does (shown when a step gets it wrong) and its parameters, the required ones first."""

    doc: str
    params: dict[str, Param]
    required: frozenset[str]


def _a(doc: str, required: dict[str, Param], optional: dict[str, Param] | None = None) -> Action:
    return Action(doc, {**required, **(optional or {})}, frozenset(required))


ACTOR = Param("an actor's name", "the process doing it", _name)
DEVICE = Param("a device's name", "the device it happens on", _name)
PASID = Param(f"a PASID 0..{_bound(PASID_SPACE - 1)}, an actor's name (its SVA PASID) or a name given with `as`",
              "which PASID", _pasid_ref)
PRG = _int(0, 511, "the 9-bit page-request group index")
# Who may take a PASID from the kernel's allocator besides an mm's first bind: a kernel driver, for itself
# (iommu_alloc_global_pasid, 6.6+). iommufd allocates none: user space picks the number per device (6.15+).
_ALLOCATORS = {"driver": AllocPath.DRIVER}
_BY_ACTOR = _choice({"iommufd": "iommufd", "driver": AllocPath.DRIVER},
                    "who does it; with iommufd (and an actor) the actor's VFIO ioctl comes first", "iommufd")

ACTIONS: dict[str, Action] = {
    "bind": _a("SVA-bind the actor's mm to a device (the first bind allocates its PASID); it fails as the kernel's "
               "does, its attach with it (-EBUSY where the device's PASID is taken)",
               {"actor": ACTOR, "device": DEVICE}),
    "unbind": _a("drop one bind reference of the actor's mm on a device", {"actor": ACTOR, "device": DEVICE}),
    "exit": _a("the actor's process exits: its mm goes away and its SVA PASID with it; after it the actor may "
               "only unbind and detach what it held (its files closing)", {"actor": ACTOR}),
    "alloc": _a("a kernel driver allocates a global PASID for itself (iommu_alloc_global_pasid, 6.6+); name it "
                "with `as` to use it later. iommufd allocates none: attach a number of the VMM's choosing instead",
                {"actor": ACTOR}, {
                    "as": _text("a name for the PASID, for later steps' `pasid`"),
                    "device": replace(DEVICE, doc="the device it is for (the allocator keeps within its width)"),
                    "via": _choice(_ALLOCATORS, "who asks the allocator", "driver")}),
    "free": _a("free a PASID (a name from `as`, an actor's SVA PASID, or a number)", {"pasid": PASID}, {
        "actor": replace(ACTOR, doc="who frees it (default: a driver)"),
        "via": _choice({p.value: p for p in AllocPath if p != AllocPath.IOMMUFD}, "the path that allocated it",
                       "driver")}),
    "attach": _a("attach a (device, PASID) to a domain: paging, nested (a guest's) or sva; through iommufd, a PASID "
                 "it has attached already gets the new domain in its place, as the kernel does (a pasid_replace, "
                 "6.15+ vfio_iommufd_physical_pasid_attach_ioas()). An attach iommu_attach_device_pasid() refuses "
                 "is played as the failed call: -EBUSY for a (device, PASID) attached already, from 6.9 -EINVAL for "
                 "PASID 0 or one beyond the device's width (before 6.9 the core does not check these: they pass here, "
                 "a bug to see, though a driver may refuse them itself, as VT-d does past its PASID table)",
                 {"device": DEVICE, "pasid": PASID}, {
                     "actor": ACTOR,
                     "domain": _choice({d.value: d for d in DomainType}, "the domain's type", "paging"),
                     "domain_id": _int(0, U64, "the domain's id (default: a fresh one)"),
                     "guest_pasid": _int(0, PASID_SPACE - 1, "the guest's own number for this PASID"),
                     "fault_queue": _int(0, U32, "the iommufd fault queue receiving its page requests"),
                     "via": _BY_ACTOR}),
    "detach": _a("detach a (device, PASID) from its domain", {"device": DEVICE, "pasid": PASID},
                 {"actor": ACTOR, "via": _BY_ACTOR}),
    "request": _a("the device sends a page-request group: `pages` requests, the last one carrying Last",
                  {"device": DEVICE, "prg": PRG}, {
                      "pasid": replace(PASID, doc="the PASID it carries (none: a request without PASID)"),
                      "addr": _int(0, U64 + 1 - MAX_EVENTS * PAGE,
                                   "the first page's address (the group stays below 2^64)", 0x7F00_0000_0000),
                      "access": Param("letters from r, w, x, p", "read, write, exec, privileged", _perm, "r"),
                      "pages": _int(1, MAX_EVENTS, "requests in the group, one page each", 1),
                      "spacing": Param("a duration, 0 or more", "time between its requests", _duration, "1us")}),
    "respond": _a("answer a page-request group: success, invalid or failure; by kernel, user (iommufd fault fd) "
                  "or guest (through its VMM's fault fd, which takes success or invalid only)",
                  {"device": DEVICE, "prg": PRG}, {
                      "pasid": PASID,
                      "code": _choice({c.name.lower(): c for c in ResponseCode}, "the response code", "success"),
                      "by": _choice({w: w for w in ("kernel", "user", "guest")}, "who answers", "kernel")}),
    "fault": _a("an unrecoverable DMA fault", {"device": DEVICE}, {
        "pasid": PASID,
        "addr": _int(0, U64, "the faulting address", 0),
        "reason": _text("the reason in words", "DMA fault"),
        "access": _choice({w: w for w in ("read", "write", "exec", "unknown")}, "the faulting access", "read")}),
    "map": _a("map IOVA pages in a paging domain", {}, {
        "device": replace(DEVICE, doc="the device whose domain it is"),
        "domain": _int(0, U64, "the domain's id"),
        "iova": _int(0, (1 << 57) - 1, "the first page's I/O virtual address", 0x1000_0000),
        "size": _int(1, 1 << 30, "bytes per page", PAGE),
        "count": _int(1, MAX_EVENTS, "pages mapped, one after another", 1)}),
    "uapi": _a("an iommufd or VFIO ioctl by the actor (name as in the kernel uapi)", {
        "actor": ACTOR,
        "name": Param("an iommufd or VFIO ioctl name", "the command, one of " + ", ".join(sorted(NUMBERS)),
                      _ioctl)}, {
        "args": Param("a mapping of struct member: integer", "the decoded argument struct: its members, as in the "
                      "uapi header, each in its C type's range", _struct, {}),
        "ret": _int(-S64, S64 - 1, "the return value, a negative errno on failure", 0)}),
    "lose": _a("the capture loses this many events (state becomes uncertain)",
               {"count": _int(1, U32, "how many events")}),
}

# -- the keys around the actions, documented where they are checked ------------------------------------------
# The oldest kernel a scenario may name: before it an IOMMU driver's own IDR hands SVA PASIDs out and takes them back
# unseen (kernel_facts alloc.driver, free.driver), so the model the player takes a bind's PASID from never learns
# that the last unbind freed one (intel-svm.c up to 5.4) and would give the next bind the wrong number.
_OLDEST = FACT_KEYS["free.ioasid"].span.first
TOP_KEYS: dict[str, str] = {
    "title": "text (required): the scenario's name, the recording's title",
    "summary": "text: what the learner should take away, the recording's description",
    "kernel": f'a quoted release such as "6.18", {_OLDEST[0]}.{_OLDEST[1]} or later: whose rules apply (before 5.18 '
              "an SVA PASID is freed at the last unbind; up to 6.3 the ioasid allocator hands PASIDs out, 6.4-6.5 "
              "an IDA inside iommu-sva.c, 6.6+ "
              f"the global IDA); a step the named kernel lacks is refused (a PASID attach or detach: "
              f"{FACT_KEYS['attach.pasid'].span}, through iommufd {FACT_KEYS['alloc.user'].span}; alloc "
              f"{HOOK_FACTS['iommu_alloc_global_pasid'].spans[0]}; a nested domain on a PASID "
              f"{FACT_KEYS['attach.nested'].span}; an iommufd fault queue, `fault_queue` or `respond by: user` or "
              f"`guest` {FACT_KEYS['response.iommufd'].span}); default: current rules",
    "stale_after": "a duration: an unanswered page-request group, or an exited process's binds held on, is "
                   "reported after this (default 100ms)",
    "devices": "a list of devices (required), with the keys below",
    "actors": "a mapping of actor name to actor, with the keys below",
    "expect": "a list of the anomalies the scenario must show: " + ", ".join(sorted(RULES)),
    "script": "a list of steps (required), with the keys below",
}
DEVICE_KEYS: dict[str, str] = {
    "name": "text (required): its PCI address or any name; actions name it in `device`",
    "width": "an integer 0..20: its PASID capability's width in bits; it carries PASIDs below 2^width (default 20)",
    "pri": "true or false: it has PCIe PRI, whose page requests a Response Failure disables (default true); a "
           "device without (an SMMUv3 stall device) sends page requests all the same: its stalled transactions, "
           "reported through the event queue and each resumed or aborted by arm_smmu_page_response() ("
           "drivers/iommu/arm/arm-smmu-v3), with no PRI for a failure to disable",
    "ats": "true or false: it caches translations, with ATS (default true)",
    "driver": "text: the driver bound to it",
}
ACTOR_KEYS: dict[str, str] = {
    "pid": f"an integer 1..{PID_MAX} (required): its process id, which also names its mm (one actor each)",
    "comm": "text: its process name (default: the actor's name)",
    "vm": "text: the virtual machine it runs, for a VMM",
}
# What an actor's steps may still be after its exit: dropping what it held as the kernel closes its files
# (exit_files() after exit_mm(), kernel/exit.c). Its pid names its mm: a process after it is another actor.
AFTER_EXIT = ("unbind", "detach")
STEP_KEYS: dict[str, str] = {
    "at": "a duration: when the step happens, from the start; steps are in time order",
    "after": "a duration: how long after the previous step (the default, 1ms); give `at` or `after`, not both",
    "say": "text: teaching text, shown by the explorer as a marker at this step",
    "title": "text: a short heading for the `say` text",
}
DURATIONS = "A duration is a number with a unit, ns, us (or µs), ms or s: 5ms, 250us, 1.5s; a bare 0 is 0."


def reference() -> str:
    """The whole language, for `simulate --help`, rendered from the tables the parser and runner use."""
    return "\n".join([
        "A scenario file is a YAML mapping:", *_rows(TOP_KEYS, 2),
        "", "Each device, an item of `devices`:", *_rows(DEVICE_KEYS, 2),
        "", "Each actor, under `actors` by its name:", *_rows(ACTOR_KEYS, 2),
        "", "Each step, an item of `script`, has at most one action (below) and:", *_rows(STEP_KEYS, 2),
        "", DURATIONS,
        "", "Actions, each a mapping of parameters (* marks the required ones):",
        *_action_rows(),
    ])


def _action_rows() -> list[str]:
    name_gap = max(map(len, ACTIONS)) + 2
    param_gap = max(len(key) for action in ACTIONS.values() for key in action.params) + 3
    rows: list[str] = []
    for name, action in ACTIONS.items():
        rows += _rows({name: action.doc}, 2, name_gap)
        rows += _rows({f"{key}*" if key in action.required else key: f"{p.text}: {p.doc}{_default(p)}"
                       for key, p in action.params.items()}, 4, param_gap)
    return rows


def _default(p: Param) -> str:
    if p.default is None:
        return ""
    if _is_int(p.default) and p.default > 0xFFFF:
        return f" (default {p.default:#x})"
    return f" (default {p.default!r})" if isinstance(p.default, str) and " " in p.default else f" (default {p.default})"


def _rows(docs: Mapping[str, str], indent: int, gap: int | None = None, width: int = 116) -> list[str]:
    """`key  doc` rows, the docs aligned and wrapped under themselves."""
    gap = gap or max(map(len, docs), default=0) + 2
    return [line for key, doc in docs.items()
            for line in textwrap.wrap(doc, width, initial_indent=" " * indent + key.ljust(gap),
                                      subsequent_indent=" " * (indent + gap))]


# -- the parsed scenario --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DeviceSpec:
    name: str
    width: int = 20
    pri: bool = True
    ats: bool = True
    driver: str | None = None


@dataclass(frozen=True, slots=True)
class Actor:
    """A process (or a VMM running a VM) that binds, allocates and answers faults."""

    name: str
    pid: int
    comm: str
    vm: str | None = None

    @property
    def owner(self) -> str:
        return f"pid {self.pid} ({self.comm})" + (f" for {self.vm}" if self.vm else "")


@dataclass(frozen=True, slots=True)
class Step:
    line: int
    t_ns: int
    action: str | None
    params: dict[str, Any]
    say: str | None = None
    title: str | None = None


@dataclass(slots=True)
class Scenario:
    path: str
    title: str
    summary: str
    kernel: str | None
    stale_ns: int
    devices: list[DeviceSpec]
    actors: dict[str, Actor]
    steps: list[Step]
    expect: list[str] = field(default_factory=list)


class _Checker:
    """Validation with line numbers: every complaint names the file, the line and what was expected."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, line: int, what: str) -> ScenarioError:
        return ScenarioError(self.path, f"line {line}", what)

    def mapping(self, value: Any, line: int, what: str) -> LineDict:
        if not isinstance(value, LineDict):
            raise self.fail(getattr(value, "line", line), f"{what} must be a mapping, got {_kind(value)}")
        return value

    def keys(self, d: LineDict, allowed: Collection[str], what: str) -> None:
        for key in d:
            if key not in allowed:
                raise self.fail(d.line_of(key), f"unknown key {key!r} in {what} (expected one of: "
                                                f"{', '.join(sorted(allowed))})")

    def get(self, d: LineDict, key: str, typ: type | tuple[type, ...], what: str, default: Any = ...) -> Any:
        if key not in d:
            if default is ...:
                raise self.fail(d.line, f"{what} needs `{key}`")
            return default
        value = d[key]
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            names = " or ".join(t.__name__ for t in (typ if isinstance(typ, tuple) else (typ,)))
            raise self.fail(d.line_of(key), f"{what}: `{key}` must be {names}, got {_kind(value)}")
        return value

    def ranged(self, d: LineDict, key: str, lo: int, hi: int, what: str, default: Any = ...) -> int:
        value = self.get(d, key, int, what, default)
        if not lo <= value <= hi:
            raise self.fail(d.line_of(key), f"{what}: `{key}` must be {lo}..{hi}, got {value}")
        return value

    def duration(self, d: LineDict, key: str, what: str) -> int:
        try:
            return parse_duration(d[key])
        except ValueError as e:
            raise self.fail(d.line_of(key), f"{what}: `{key}`: {e}") from None


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    return f"{type(value).__name__} {value!r}"


def parse_scenario(path: str | Path) -> Scenario:
    """Load and validate a scenario file; any mistake is a ScenarioError naming the file and line."""
    path = str(path)
    c = _Checker(path)
    doc = load_yaml(path, ScenarioError)
    if doc is None:
        raise c.fail(1, "empty scenario: expected a mapping with title, devices, actors and script")
    top = c.mapping(doc, 1, "a scenario")
    c.keys(top, TOP_KEYS, "scenario")
    title = c.get(top, "title", str, "a scenario")
    summary = c.get(top, "summary", str, "a scenario", "")
    stale_ns = c.duration(top, "stale_after", "a scenario") if "stale_after" in top else DEFAULT_STALE_NS
    devices = _devices(c, top)
    actors = _actors(c, top)
    expect = _expect(c, top)
    kernel = _kernel(c, top)
    steps = _steps(c, top, actors, {d.name for d in devices}, parse_version(kernel))
    return Scenario(path, title, summary, kernel, stale_ns, devices, actors, steps, expect)


_RELEASE = re.compile(r"\d+\.\d+(\.\d+)?([-+][\w.+~-]*)?")


def _kernel(c: _Checker, top: LineDict) -> str | None:
    """The release whose rules apply. A number is refused: YAML reads an unquoted 6.10 as 6.1, another kernel; so is
    a release older than the player can follow (`_OLDEST`)."""
    if "kernel" not in top:
        return None
    value, line = top["kernel"], top.line_of("kernel")
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise c.fail(line, f"`kernel`: expected a quoted release, got {_kind(value)}: YAML reads an unquoted "
                           f"release as a number (6.10 becomes 6.1), so quote it, e.g. kernel: \"6.10\"")
    # Read whole, as uname -r writes a release ("6.12.118-pasidlab"): parse_version() reads a capture's release
    # leniently, and would take "6.1O" (letter O) for 6.1, another kernel's rules
    version = parse_version(value) if isinstance(value, str) and _RELEASE.fullmatch(value) else None
    if version is None:
        raise c.fail(line, f"`kernel`: expected a release such as \"6.18\" or \"6.12.118-custom\" (major.minor, "
                           f"then .patch and a -suffix if any), got {_kind(value)}")
    if version < _OLDEST:
        raise c.fail(line, f"`kernel`: scenarios start at {_OLDEST[0]}.{_OLDEST[1]}, got {value!r}: before it each "
                           "IOMMU driver hands SVA PASIDs out and frees them where no capture sees it "
                           "(kernel_facts alloc.driver, free.driver)")
    return value


def _devices(c: _Checker, top: LineDict) -> list[DeviceSpec]:
    devices: list[DeviceSpec] = []
    for i, raw in enumerate(c.get(top, "devices", list, "a scenario")):
        what = f"device {i + 1}"
        d = c.mapping(raw, top.line_of("devices"), what)
        c.keys(d, DEVICE_KEYS, what)
        width = c.get(d, "width", int, what, 20)
        if not 0 <= width <= 20:
            raise c.fail(d.line_of("width"), f"{what}: PASID width must be 0..20 bits, got {width}")
        name = str(c.get(d, "name", (str, int), what))
        if any(known.name == name for known in devices):
            raise c.fail(d.line_of("name"), f"{what}: device {name!r} is named twice: a device's name says which one "
                                            f"each step means, so give each its own")
        devices.append(DeviceSpec(name, width, c.get(d, "pri", bool, what, True),
                                  c.get(d, "ats", bool, what, True), c.get(d, "driver", str, what, None)))
    return devices


def _actors(c: _Checker, top: LineDict) -> dict[str, Actor]:
    actors: dict[str, Actor] = {}
    raw_actors = c.mapping(top.get("actors", LineDict()), top.line_of("actors"), "actors")
    for name, raw in raw_actors.items():
        what = f"actor {name!r}"
        a = c.mapping(raw, raw_actors.line_of(name), what)
        c.keys(a, ACTOR_KEYS, what)
        pid = c.ranged(a, "pid", 1, PID_MAX, what)
        twin = next((other.name for other in actors.values() if other.pid == pid), None)
        if twin is not None:
            raise c.fail(a.line_of("pid"), f"{what}: pid {pid} is actor {twin!r}'s too: a pid names one process and "
                                           f"its mm, so give each actor its own")
        actors[str(name)] = Actor(str(name), pid, str(c.get(a, "comm", (str, int), what, name)),
                                  c.get(a, "vm", str, what, None))
    return actors


def _expect(c: _Checker, top: LineDict) -> list[str]:
    expect = list(c.get(top, "expect", list, "a scenario", LineList()))
    for i, rule in enumerate(expect):
        if rule not in RULES:
            lines = getattr(top["expect"], "item_lines", [top.line_of("expect")] * len(expect))
            raise c.fail(lines[i], f"expect: unknown anomaly {rule!r} (known: {', '.join(sorted(RULES))})")
    return expect


def _steps(c: _Checker, top: LineDict, actors: dict[str, Actor], device_names: set[str],
           kernel: Version | None) -> list[Step]:
    steps: list[Step] = []
    t = 0
    exited: dict[str, int] = {}  # actor -> the line of its exit
    script = c.get(top, "script", list, "a scenario")
    for i, raw in enumerate(script):
        what = f"step {i + 1}"
        line = script.item_lines[i] if isinstance(script, LineList) else top.line_of("script")
        s = c.mapping(raw, line, what)
        t = _time(c, s, what, t, first=not steps)
        action, params = _action(c, s, what, actors, device_names)
        if action is not None and kernel is not None:
            for span, doing in _needs(action, params):
                if kernel not in span:
                    raise c.fail(s.line_of(action), f"{what} ({action}): {doing} is in kernels {span}, not in this "
                                                    f"scenario's {kernel[0]}.{kernel[1]} (`kernel`)")
        actor = str(params.get("actor")) if action is not None and "actor" in params else None
        if actor in exited and action not in AFTER_EXIT:
            raise c.fail(params["_lines"].get("actor", s.line),
                         f"{what} ({action}): actor {actor!r} exited at line {exited[actor]}; after that only its "
                         f"{' and '.join(AFTER_EXIT)} steps may follow (its files closing): a new process is another "
                         f"actor, with its own pid")
        if action == "exit" and actor is not None:
            exited[actor] = s.line_of(action)
        say = c.get(s, "say", str, what, None)
        if action is None and say is None:
            raise c.fail(s.line, f"{what} does nothing: give an action ({', '.join(ACTIONS)}) or `say`")
        steps.append(Step(s.line, t, action, params, say, c.get(s, "title", str, what, None)))
    return steps


def through_iommufd(params: Mapping[str, Any]) -> bool:
    """Whether an attach or detach is an actor's VFIO ioctl (an actor, not `via: driver`) rather than a driver's."""
    return params.get("actor") is not None and params.get("via", "iommufd") != "driver"


def _needs(action: str, params: Mapping[str, Any]) -> list[tuple[Span, str]]:
    """The kernel versions a step needs (kernel_facts' table), with what it does in words."""
    queue = FACT_KEYS["response.iommufd"].span  # iommufd fault queues: IOMMU_FAULT_QUEUE_ALLOC and its fd
    if action == "alloc":
        return [(HOOK_FACTS["iommu_alloc_global_pasid"].spans[0], "a driver's PASID allocation "
                                                                  "(iommu_alloc_global_pasid())")]
    if action == "respond":
        return [(queue, "an answer through an iommufd fault queue (`by: user` or `guest`)")] if params.get(
            "by", "kernel") != "kernel" else []
    if action == "uapi":
        return [(queue, "an iommufd fault queue (IOMMU_FAULT_QUEUE_ALLOC)")] if params.get(
            "name") == "IOMMU_FAULT_QUEUE_ALLOC" else []
    if action not in ("attach", "detach"):
        return []
    needs = [(FACT_KEYS["attach.pasid"].span, f"a PASID {action} (iommu_{action}_device_pasid())")]
    if through_iommufd(params):
        needs.append((FACT_KEYS["alloc.user"].span, f"a PASID {action} through iommufd (VFIO_DEVICE_"
                                                    f"{action.upper()}_IOMMUFD_PT with VFIO_DEVICE_ATTACH_PASID)"))
    if params.get("domain") == DomainType.NESTED.value:
        needs.append((FACT_KEYS["attach.nested"].span, "a nested domain on a PASID (IOMMU_DOMAIN_NESTED)"))
    if "fault_queue" in params:
        needs.append((queue, "an iommufd fault queue (`fault_queue`)"))
    return needs


def _struct_members(c: _Checker, p: LineDict, what: str) -> None:
    """An ioctl's `args` name only members of its struct, each in its C type's range (explorer/uapi_structs.py),
    as a capture decodes them: a typo or a negative u32 is no call a kernel could see."""
    name, args = p["name"], p["args"]
    fields = members(name, args.get("op"))
    for key, value in args.items():
        line = args.line_of(key) if isinstance(args, LineDict) else p.line_of("args")
        field = fields.get(key)
        if field is None:
            raise c.fail(line, f"{what} (uapi): `args`: {name} has no member {key!r} (its struct's: "
                               f"{', '.join(fields) or 'none, it takes no struct'})")
        lo, hi = field.bounds
        if not lo <= value <= hi:
            raise c.fail(line, f"{what} (uapi): `args`: {key} must be an integer {_bound(lo)}..{_bound(hi)}, "
                               f"got {value}")


def _time(c: _Checker, s: LineDict, what: str, t: int, first: bool) -> int:
    """The step's time: `at`, the previous step's plus `after`, or plus the default gap."""
    if "at" in s and "after" in s:
        raise c.fail(s.line, f"{what}: give `at` or `after`, not both")
    if "at" in s:
        at = c.duration(s, "at", what)
        if at < t:
            raise c.fail(s.line_of("at"), f"{what}: at {s['at']} goes back in time (the previous step is at {t} "
                                          f"ns); steps must be in time order")
        return at
    if "after" in s:
        after = c.duration(s, "after", what)
        if after < 0:
            raise c.fail(s.line_of("after"), f"{what}: after {s['after']} is negative: a step comes after the "
                                             f"previous one (0 or more; `at` gives a time of its own)")
        return t + after
    return t if first else t + DEFAULT_GAP_NS


def _action(c: _Checker, s: LineDict, what: str, actors: dict[str, Actor],
            device_names: set[str]) -> tuple[str | None, dict[str, Any]]:
    """The step's action and its parameters, each checked against the action table at its own line."""
    actions = [k for k in s if k not in STEP_KEYS]
    for k in actions:
        if k not in ACTIONS:
            raise c.fail(s.line_of(k), f"{what}: unknown action {k!r} (expected one of: {', '.join(ACTIONS)}; "
                                       f"or {', '.join(sorted(STEP_KEYS))})")
    if len(actions) > 1:
        raise c.fail(s.line, f"{what}: one action per step, got {', '.join(actions)}")
    if not actions:
        return None, {}
    action = actions[0]
    spec = ACTIONS[action]
    p = c.mapping(s[action], s.line_of(action), f"{what} ({action})")
    c.keys(p, spec.params, f"{what} ({action}: {spec.doc})")
    for key, value in p.items():
        try:
            spec.params[key].read(value)
        except ValueError as e:
            raise c.fail(p.line_of(key), f"{what} ({action}): `{key}`: {e}") from None
    for req in sorted(spec.required - set(p)):
        raise c.fail(p.line, f"{what} ({action}) needs `{req}`: {spec.doc}")
    if action == "uapi" and "args" in p:
        _struct_members(c, p, what)
    for key, known, plural in (("actor", actors, "actors"), ("device", device_names, "devices")):
        if key in p and str(p[key]) not in known:
            raise c.fail(p.line_of(key), f"{what}: unknown {key} {p[key]!r} ({plural}: "
                                         f"{', '.join(sorted(known)) or 'none defined'})")
    return action, {**p, "_lines": p.key_lines}
