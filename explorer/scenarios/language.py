"""The teaching-scenario language: a topology, some actors, and a timed script of actions.

    title: Two processes, one device
    summary: What the learner should take away.
    kernel: "6.18"                  # which kernel's rules apply (optional)
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
`title`), and at most one action. See ACTIONS for each action's parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ScenarioError
from ..simulator import RULES
from ..yaml_lines import LineDict, LineList, load_yaml, parse_duration


@dataclass(frozen=True, slots=True)
class Action:
    """An action's parameters: required, optional, and a line of help shown when a step gets them wrong."""

    required: frozenset[str]
    optional: frozenset[str]
    doc: str


def _a(required: str, optional: str, doc: str) -> Action:
    return Action(frozenset(required.split()), frozenset(optional.split()), doc)


ACTIONS: dict[str, Action] = {
    "bind": _a("actor device", "", "SVA-bind the actor's mm to a device (the first bind allocates its PASID)"),
    "unbind": _a("actor device", "", "drop one bind reference of the actor's mm on a device"),
    "exit": _a("actor", "", "the actor's process exits: its mm goes away and its SVA PASID with it"),
    "alloc": _a("actor", "as device via", "allocate a PASID through iommufd (via: iommufd) or a driver "
                                         "(via: driver); name it with `as` to use it later"),
    "free": _a("pasid", "actor via", "free a PASID (a name from `as`, an actor's SVA PASID, or a number)"),
    "attach": _a("device pasid", "actor domain domain_id guest_pasid fault_queue via",
                 "attach a (device, PASID) to a domain: paging, nested (a guest's) or sva"),
    "detach": _a("device pasid", "actor via", "detach a (device, PASID) from its domain"),
    "request": _a("device prg", "pasid addr access pages spacing",
                  "the device sends a page-request group: `pages` requests, the last one carrying Last"),
    "respond": _a("device prg", "pasid code by", "answer a page-request group: success, invalid or failure; "
                                                 "by kernel, user (iommufd fault fd) or guest"),
    "fault": _a("device", "pasid addr reason access", "an unrecoverable DMA fault"),
    "map": _a("", "device domain iova size count", "map IOVA pages in a paging domain"),
    "uapi": _a("actor name", "args ret", "an iommufd or VFIO ioctl by the actor (name as in the kernel uapi)"),
    "lose": _a("count", "", "the capture loses this many events (state becomes uncertain)"),
}
STEP_KEYS = frozenset({"at", "after", "say", "title"})
DEFAULT_GAP_NS = 1_000_000


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

    def keys(self, d: LineDict, allowed: set[str] | frozenset[str], what: str) -> None:
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
    c.keys(top, {"title", "summary", "kernel", "stale_after", "devices", "actors", "script", "expect"}, "scenario")
    title = c.get(top, "title", str, "a scenario")
    summary = c.get(top, "summary", str, "a scenario", "")
    kernel = top.get("kernel")
    kernel = None if kernel is None else str(kernel)
    stale_ns = c.duration(top, "stale_after", "a scenario") if "stale_after" in top else 100_000_000

    devices: list[DeviceSpec] = []
    for i, raw in enumerate(c.get(top, "devices", list, "a scenario")):
        d = c.mapping(raw, top.line_of("devices"), f"device {i + 1}")
        c.keys(d, {"name", "width", "pri", "ats", "driver"}, f"device {i + 1}")
        width = c.get(d, "width", int, f"device {i + 1}", 20)
        if not 0 <= width <= 20:
            raise c.fail(d.line_of("width"), f"device {i + 1}: PASID width must be 0..20 bits, got {width}")
        devices.append(DeviceSpec(str(c.get(d, "name", (str, int), f"device {i + 1}")), width,
                                  c.get(d, "pri", bool, f"device {i + 1}", True),
                                  c.get(d, "ats", bool, f"device {i + 1}", True),
                                  c.get(d, "driver", str, f"device {i + 1}", None)))
    device_names = {d.name for d in devices}

    actors: dict[str, Actor] = {}
    raw_actors = c.mapping(top.get("actors", LineDict()), top.line_of("actors"), "actors")
    for name, raw in raw_actors.items():
        a = c.mapping(raw, raw_actors.line_of(name), f"actor {name!r}")
        c.keys(a, {"pid", "comm", "vm"}, f"actor {name!r}")
        actors[str(name)] = Actor(str(name), c.get(a, "pid", int, f"actor {name!r}"),
                                  str(c.get(a, "comm", (str, int), f"actor {name!r}", name)),
                                  c.get(a, "vm", str, f"actor {name!r}", None))

    expect = list(c.get(top, "expect", list, "a scenario", LineList()))
    for i, rule in enumerate(expect):
        if rule not in RULES:
            lines = getattr(top["expect"], "item_lines", [top.line_of("expect")] * len(expect))
            raise c.fail(lines[i], f"expect: unknown anomaly {rule!r} (known: {', '.join(sorted(RULES))})")

    steps: list[Step] = []
    t = 0
    script = c.get(top, "script", list, "a scenario")
    for i, raw in enumerate(script):
        line = script.item_lines[i] if isinstance(script, LineList) else top.line_of("script")
        s = c.mapping(raw, line, f"step {i + 1}")
        actions = [k for k in s if k not in STEP_KEYS]
        for k in actions:
            if k not in ACTIONS:
                raise c.fail(s.line_of(k), f"step {i + 1}: unknown action {k!r} (expected one of: "
                                           f"{', '.join(ACTIONS)}; or {', '.join(sorted(STEP_KEYS))})")
        if len(actions) > 1:
            raise c.fail(s.line, f"step {i + 1}: one action per step, got {', '.join(actions)}")
        if "at" in s and "after" in s:
            raise c.fail(s.line, f"step {i + 1}: give `at` or `after`, not both")
        if "at" in s:
            at = c.duration(s, "at", f"step {i + 1}")
            if at < t:
                raise c.fail(s.line_of("at"), f"step {i + 1}: at {s['at']} goes back in time (the previous "
                                              f"step is at {t} ns); steps must be in time order")
            t = at
        elif "after" in s:
            t += c.duration(s, "after", f"step {i + 1}")
        elif steps:
            t += DEFAULT_GAP_NS
        params: dict[str, Any] = {}
        action = actions[0] if actions else None
        if action is not None:
            spec = ACTIONS[action]
            p = c.mapping(s[action], s.line_of(action), f"step {i + 1} ({action})")
            c.keys(p, spec.required | spec.optional, f"step {i + 1} ({action}: {spec.doc})")
            for req in sorted(spec.required - set(p)):
                raise c.fail(p.line, f"step {i + 1} ({action}) needs `{req}`: {spec.doc}")
            if "actor" in p and str(p["actor"]) not in actors:
                raise c.fail(p.line_of("actor"), f"step {i + 1}: unknown actor {p['actor']!r} (actors: "
                                                 f"{', '.join(actors) or 'none defined'})")
            if "device" in p and str(p["device"]) not in device_names:
                raise c.fail(p.line_of("device"), f"step {i + 1}: unknown device {p['device']!r} (devices: "
                                                  f"{', '.join(sorted(device_names)) or 'none defined'})")
            params = dict(p)
            params["_lines"] = p.key_lines
        say = c.get(s, "say", str, f"step {i + 1}", None)
        if action is None and say is None:
            raise c.fail(s.line, f"step {i + 1} does nothing: give an action ({', '.join(ACTIONS)}) or `say`")
        steps.append(Step(s.line, t, action, params, say, c.get(s, "title", str, f"step {i + 1}", None)))
    return Scenario(path, title, summary, kernel, stale_ns, devices, actors, steps, expect)
