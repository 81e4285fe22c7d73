"""Lab kernels: Debian's kernel source packages built with the lab's config fragment, cached and resumable.

A kernel is cached under the user's cache directory keyed by (source version, fragment, compiler, pahole), so
a change to any of them builds a new kernel and an interrupted build resumes where `make` stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ExplorerError
from . import DATA


class LabError(ExplorerError):
    """The lab cannot build or boot a kernel (a missing tool, source package, disk space or privilege)."""


@dataclass(frozen=True)
class KernelSource:
    """Where a lab kernel version's source comes from: this machine's own apt suites, or another Debian suite."""

    version: str
    suite: str | None  # None: this machine's apt configuration already has it
    teaches: str
    iommufd: bool = True  # 6.2+: the mock device and fault queues, so faultq and the VT-d boot's tests run there
    pasid_mock: bool = False  # its selftest mock takes PASIDs (IOMMU_TEST_OP_PASID_*, 6.15+): faultq -A works
    selftest: bool = False  # its tree's tools/testing/selftests/iommu builds against its own uAPI (Debian's 6.12
    # ships a newer selftest than its headers: IOMMU_HW_INFO_TYPE_DEFAULT, MOCK_FLAGS_DEVICE_PASID, ... missing)


KERNELS: dict[str, KernelSource] = {
    "6.12": KernelSource("6.12", None, "iommufd fault queues, iopf_group_response, no PASID-capable mock"),
    "7.3": KernelSource("7.3", "trixie-backports", "PASID-capable mock, iommufd/VFIO PASID attach and replace",
                        pasid_mock=True, selftest=True),
    "6.1": KernelSource("6.1", None, "the ioasid allocator era: no iommufd, iommu_page_response", iommufd=False),
}
DEFAULT_KERNEL = "6.12"
BUILD_TOOLS = {"make": "make", "gcc": "gcc", "bc": "bc", "bison": "bison", "flex": "flex", "pahole": "dwarves",
               "cpio": "cpio", "dpkg-deb": "dpkg", "apt-get": "apt", "xz": "xz-utils"}
BUILD_HEADERS = {"/usr/include/libelf.h": "libelf-dev", "/usr/include/openssl/ssl.h": "libssl-dev",
                 "/usr/include/sys/capability.h": "libcap-dev"}  # the last for the iommufd selftest
BUILD_SPACE = 5 << 30  # an unpacked tree (1.7 GB) and a build directory (1.2 GB), with room to spare
EXPECTED_UNITS = 2100  # compile lines in a full lab build, for progress before the first build has counted them

Progress = Callable[[str, int, int | None], None]  # (stage, done, total)


def cache_root() -> Path:
    """The lab's cache: $XDG_CACHE_HOME/pasid-explorer/lab, else ~/.cache/pasid-explorer/lab."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pasid-explorer" / "lab"


def source_for(version: str) -> KernelSource:
    try:
        return KERNELS[version]
    except KeyError:
        raise LabError(f"lab: no lab kernel {version!r}; known: {', '.join(KERNELS)}") from None


def fragment_text(version: str) -> str:
    """The lab fragment, then the version's own additions (data/lab-V.config) where it has some."""
    extra = DATA / f"lab-{version}.config"
    return (DATA / "lab.config").read_text() + (extra.read_text() if extra.exists() else "")


def _tool_version(argv: list[str]) -> str:
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).splitlines()[0].strip() if (out.stdout or out.stderr) else "?"


def check_build_tools() -> None:
    """One line naming every missing build tool and the Debian packages that bring them."""
    missing = sorted({pkg for tool, pkg in BUILD_TOOLS.items() if shutil.which(tool) is None}
                     | {pkg for path, pkg in BUILD_HEADERS.items() if not Path(path).exists()})
    if missing:
        raise LabError(f"lab: building a kernel needs the Debian packages {' '.join(missing)} "
                       f"(apt-get install {' '.join(missing)}; .ci/setup installs them)")


def check_space(where: Path, need: int) -> None:
    where.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(where).free
    if free < need:
        raise LabError(f"lab: {where} has {free / 2**30:.1f} GiB free; a lab kernel build needs "
                       f"{need / 2**30:.0f} GiB")


def _writable(where: Path) -> None:
    try:
        where.mkdir(parents=True, exist_ok=True)
        probe = where / ".writable"
        probe.touch()
        probe.unlink()
    except PermissionError:
        raise LabError(f"lab: no permission to write the lab cache {where} (set XDG_CACHE_HOME to a folder "
                       "you own, or run as its owner)") from None


# --- the source package -------------------------------------------------------------------------------------


def debian_mirror(config_dir: Path = Path("/etc/apt")) -> str:
    """The Debian archive URI this machine's apt already uses (never a hard-coded host)."""
    texts = [p.read_text(errors="replace") for p in sorted((config_dir / "sources.list.d").glob("*.sources"))]
    for stanza in "\n\n".join(texts).split("\n\n"):
        fields = dict(_deb822_fields(stanza))
        suites = fields.get("suites", "").split()
        if "deb" in fields.get("types", "").split() and suites and not any(s.endswith("-security") for s in suites):
            return fields["uris"].split()[0]
    lists = [config_dir / "sources.list", *sorted((config_dir / "sources.list.d").glob("*.list"))]
    for path in lists:
        for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
            m = re.match(r"\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", line)
            if m and "debian" in m.group(1) and not m.group(2).endswith("-security"):
                return m.group(1)
    raise LabError(f"lab: no Debian archive in {config_dir}/sources.list* to fetch kernel source packages from")


def _deb822_fields(stanza: str):
    for line in stanza.splitlines():
        if line and not line.startswith(("#", " ")) and ":" in line:
            key, _, value = line.partition(":")
            yield key.strip().lower(), value.strip()


def _apt(argv: list[str], apt_dir: Path | None, cwd: Path) -> subprocess.CompletedProcess:
    opts: list[str] = []
    if apt_dir is not None:
        opts = ["-o", f"Dir::Etc::SourceList={apt_dir / 'sources.list'}", "-o", "Dir::Etc::SourceParts=-",
                "-o", f"Dir::State::Lists={apt_dir / 'lists'}", "-o", f"Dir::Cache={apt_dir / 'cache'}",
                "-o", "Debug::NoLocking=1"]
    return subprocess.run(["apt-get", "-q", *opts, *argv], cwd=cwd, capture_output=True, text=True, check=False)


def fetch_source_deb(src: KernelSource, root: Path) -> Path:
    """The linux-source-V .deb (only the source tarball: it installs nothing), downloaded once into the cache."""
    debs = root / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    have = sorted(debs.glob(f"linux-source-{src.version}_*.deb"))
    if have:
        return have[-1]
    package = f"linux-source-{src.version}"
    apt_dir = None
    with tempfile.TemporaryDirectory(prefix="pasid-lab-apt-") as tmp:
        if src.suite is not None:
            apt_dir = Path(tmp)
            (apt_dir / "lists" / "partial").mkdir(parents=True)
            (apt_dir / "cache" / "archives" / "partial").mkdir(parents=True)
            mirror = debian_mirror()
            (apt_dir / "sources.list").write_text(
                f"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {mirror} {src.suite} main\n")
            upd = _apt(["update"], apt_dir, debs)
            if upd.returncode != 0:
                raise LabError(f"lab: cannot read {src.suite} from {mirror}: {_last_line(upd.stderr)}")
        got = _apt(["download", package], apt_dir, debs)
    if got.returncode != 0:
        where = f"{src.suite} at {debian_mirror()}" if src.suite else "this machine's apt sources"
        raise LabError(f"lab: no Debian source package {package} in {where}: {_last_line(got.stderr)}")
    have = sorted(debs.glob(f"{package}_*.deb"))
    if not have:
        raise LabError(f"lab: apt-get download {package} left no .deb in {debs}")
    return have[-1]


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "no message"


def unpack_source(deb: Path, root: Path, version: str) -> Path:
    """The unpacked tree, from the tarball inside the .deb; unpacked once (about 10 s, 1.7 GB)."""
    tree = root / "src" / deb.stem
    done = tree / ".pasidlab-unpacked"
    if done.exists():
        return tree / f"linux-source-{version}"
    if tree.exists():
        shutil.rmtree(tree)
    tree.mkdir(parents=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tree / "deb")], check=True)
    tarball = next((tree / "deb" / "usr" / "src").glob(f"linux-source-{version}.tar.*"))
    subprocess.run(["tar", "-xf", str(tarball), "-C", str(tree)], check=True)
    shutil.rmtree(tree / "deb")
    done.touch()
    return tree / f"linux-source-{version}"


# --- the build ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabKernel:
    """A built lab kernel: what to boot, and the tree that out-of-tree modules and bcc build against."""

    version: str
    source_package: str  # e.g. linux-source-6.12_6.12.118-1~deb12u1_all
    build_dir: Path
    src_dir: Path
    build_s: float

    @property
    def bzimage(self) -> Path:
        return self.build_dir / "arch" / "x86" / "boot" / "bzImage"

    @property
    def release(self) -> str:
        return (self.build_dir / "include" / "config" / "kernel.release").read_text().strip()

    def info(self) -> dict:
        return {"version": self.version, "source_package": self.source_package, "release": self.release,
                "build_dir": str(self.build_dir), "build_s": round(self.build_s, 1)}


def cache_key(source_package: str, fragment: str) -> str:
    parts = [source_package, fragment, _tool_version(["gcc", "--version"]), _tool_version(["pahole", "--version"])]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


def cached(version: str, root: Path | None = None) -> LabKernel | None:
    """The finished build of a version for today's key (its downloaded source package, the fragment, compiler and
    pahole), if any (no network, no build): a build from an older fragment lacks options the lab now relies on."""
    root = root or cache_root()
    debs = sorted((root / "debs").glob(f"linux-source-{version}_*.deb"))
    if not debs:
        return None
    stamp = root / "kernels" / f"{version}-{cache_key(debs[-1].stem, fragment_text(version))}" / ".pasidlab-built"
    if not stamp.exists():
        return None
    meta = json.loads(stamp.read_text())
    return LabKernel(version, meta["source_package"], stamp.parent, Path(meta["src_dir"]), meta["build_s"])


def build(version: str, progress: Progress | None = None, jobs: int | None = None,
          root: Path | None = None) -> LabKernel:
    """Fetch, unpack, configure and build a lab kernel, or return the cached one for the same key."""
    src = source_for(version)
    root = root or cache_root()
    _writable(root)
    check_build_tools()
    fragment = fragment_text(version)
    deb = fetch_source_deb(src, root)
    found = cached(version, root)
    if found is not None:
        return found
    build_dir = root / "kernels" / f"{version}-{cache_key(deb.stem, fragment)}"
    stamp = build_dir / ".pasidlab-built"
    check_space(root, BUILD_SPACE if not build_dir.exists() else BUILD_SPACE // 3)
    say = progress or (lambda stage, done, total: None)
    say(f"unpacking {deb.name}", 0, None)
    tree = unpack_source(deb, root, version)
    started = time.monotonic()
    build_dir.mkdir(parents=True, exist_ok=True)
    _configure(tree, build_dir, fragment)
    configure_s = time.monotonic() - started
    units = _make(tree, build_dir, jobs or os.cpu_count() or 1, say, root / "units.json", version)
    elapsed = configure_s + _resumed_seconds(build_dir)  # every make run's time, interrupted ones included
    stamp.write_text(json.dumps({"source_package": deb.stem, "src_dir": str(tree), "build_s": elapsed,
                                 "units": units}))
    return LabKernel(version, deb.stem, build_dir, tree, elapsed)


def _resumed_seconds(build_dir: Path) -> float:
    """Time spent by earlier, interrupted runs of the same build (so build_s is the whole build's time)."""
    spent = build_dir / ".pasidlab-spent"
    return float(spent.read_text()) if spent.exists() else 0.0


def _configure(tree: Path, build_dir: Path, fragment: str) -> None:
    """tinyconfig plus the fragment, once; then every fragment option must have survived olddefconfig."""
    frag = build_dir / ".pasidlab-fragment"
    if (build_dir / ".config").exists() and frag.exists() and frag.read_text() == fragment:
        return
    frag.write_text(fragment)
    make = ["make", "-s", "-C", str(tree), f"O={build_dir}"]
    _run(make + ["tinyconfig"], "make tinyconfig")
    _run([str(tree / "scripts" / "kconfig" / "merge_config.sh"), "-m", "-O", str(build_dir),
          str(build_dir / ".config"), str(frag)], "merge_config.sh", cwd=tree)
    _run(make + ["olddefconfig"], "make olddefconfig")
    config = (build_dir / ".config").read_text()
    known = _kconfig_symbols(tree)  # a symbol this version does not define (PROC_SYSCTL in 7.x) cannot be lost
    lost = [line for line in fragment.splitlines() if line.startswith("CONFIG_") and
            line.split("=")[0].removeprefix("CONFIG_") in known and f"\n{line}\n" not in f"\n{config}\n"]
    if lost:
        raise LabError(f"lab: {tree.name} dropped config options (a dependency is missing): {', '.join(lost)}")


def _kconfig_symbols(tree: Path) -> set[str]:
    found = subprocess.run(["grep", "-rhoE", "--include=Kconfig*", r"^\s*(menu)?config\s+[A-Z0-9_]+", str(tree)],
                           capture_output=True, text=True, check=False).stdout
    return {line.split()[-1] for line in found.splitlines()}


def _run(argv: list[str], what: str, cwd: Path | None = None) -> None:
    out = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, check=False)
    if out.returncode != 0:
        raise LabError(f"lab: {what} failed: {_last_line(out.stderr or out.stdout)}")


_UNIT = re.compile(r"^\s+(CC|AS|LD|AR|HOSTCC|BTF|GEN|CHK|OBJCOPY)\b")


def _make(tree: Path, build_dir: Path, jobs: int, say: Progress, units_file: Path, version: str) -> int:
    """make -jN all with a progress count of compile lines; the total is last build's count for this version."""
    known = json.loads(units_file.read_text()) if units_file.exists() else {}
    total = known.get(version, EXPECTED_UNITS)
    log = build_dir / ".pasidlab-make.log"
    started = time.monotonic()
    done = 0
    with log.open("w") as sink:
        proc = subprocess.Popen(["make", "-C", str(tree), f"O={build_dir}", f"-j{jobs}", "all"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                sink.write(line)
                if _UNIT.match(line):
                    done += 1
                    say(f"building {version}", done, max(total, done))
            status = proc.wait()
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait()
            spent = build_dir / ".pasidlab-spent"
            spent.write_text(str(_resumed_seconds(build_dir) + time.monotonic() - started))
    if status != 0:
        raise LabError(f"lab: building {version} failed (make exit {status}); the log is {log}")
    if done > total / 2:  # a full build, not a resumed tail: remember its size for the next progress bar
        known[version] = done
        units_file.write_text(json.dumps(known))
    return done
