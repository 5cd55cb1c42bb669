"""Build the guest image once and keep it in a cache keyed by the hash of its inputs.

Layers, each in its own directory of the cache (CONVOY_GUEST_CACHE, default /var/cache/convoy-guest),
each rebuilt only when its own inputs change:
  kernel-<version>/   Debian's kernel package, unpacked, its modules indexed (depmod)
  rootfs-<hash>/      debootstrap minbase of bookworm + image/guest-packages.txt
  wheels-<hash>/      the project's runtime and test dependencies as wheels for the guest's CPython 3.11
                      (keyed by pyproject.toml)
  image-<hash>/       vmlinuz, initrd.img (busybox + virtio/ext4 modules) and root.img (the rootfs, the
                      kernel's modules, a venv with the wheels, image/guest-init), keyed by all of the above
The project's code is not in the image: the guest mounts the repository over 9p at each boot.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
INPUTS = HERE / "image"
SUITE = "bookworm"
MIRROR = os.environ.get("CONVOY_GUEST_MIRROR", "http://deb.debian.org/debian")
GUEST_PYTHON = "3.11"  # bookworm's python3
VENV = "/opt/convoy-venv"
INITRD_MODULES = ["virtio_pci", "virtio_blk", "ext4"]  # just enough to mount the root image
# Module directories no test needs: left out of the image to keep it small.
UNUSED_MODULE_DIRS = [
    "sound", "drivers/gpu", "drivers/media", "drivers/net/wireless", "drivers/infiniband", "drivers/iio",
    "drivers/staging", "drivers/comedi", "drivers/usb", "drivers/hwmon", "drivers/bluetooth",
    "net/bluetooth", "net/wireless", "net/mac80211", "drivers/scsi",
]
# The kernel's pip platform tags a bookworm guest (glibc 2.36) accepts: pip does not widen them itself.
WHEEL_PLATFORMS = ["manylinux_2_36_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64",
                   "manylinux2014_x86_64", "manylinux1_x86_64"]


class GuestBuildError(RuntimeError):
    """The image could not be built; the message says which step and what to do."""


@dataclass(frozen=True)
class Image:
    kernel: Path
    initrd: Path
    root: Path


def cache_root() -> Path:
    return Path(os.environ.get("CONVOY_GUEST_CACHE", "/var/cache/convoy-guest"))


def log(message: str) -> None:
    print(f"guest-image: {message}", file=sys.stderr, flush=True)


def run(*args: str | Path, **kwargs) -> subprocess.CompletedProcess:
    """Run a build step; a failure names the command and shows its output."""
    command = [str(a) for a in args]
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()[-30:]
        raise GuestBuildError(f"{' '.join(command)} failed (exit {result.returncode}):\n" + "\n".join(output))
    return result


def digest(*parts: str | bytes | Path) -> str:
    """A short hash of strings, bytes and file contents: the cache key of a layer."""
    h = hashlib.sha256()
    for part in parts:
        data = part.read_bytes() if isinstance(part, Path) else part.encode() if isinstance(part, str) else part
        h.update(hashlib.sha256(data).digest())
    return h.hexdigest()[:16]


def listed(path: Path) -> list[str]:
    """The entries of a package list: one a line, # comments and blank lines skipped."""
    return [w for w in (line.split("#")[0].strip() for line in path.read_text().splitlines()) if w]


def missing_debs(packages: list[str]) -> list[str]:
    def installed(pkg: str) -> bool:
        status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
        return "install ok installed" in status.stdout

    return [p for p in packages if not installed(p)]


def ensure_host_packages() -> None:
    """Install what the host needs to build and boot the guest (qemu, debootstrap...)."""
    missing = missing_debs(listed(INPUTS / "host-packages.txt"))
    if not missing:
        return
    if os.geteuid() != 0:
        raise GuestBuildError(f"the host lacks {' '.join(missing)}: install them (apt-get install) or run as root")
    log(f"installing host packages {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run("apt-get", "-q", "-o", "DPkg::Lock::Timeout=600", "update", env=env)
    run("apt-get", "-q", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "--no-install-recommends", *missing, env=env)


def kernel_version() -> str:
    """The kernel to boot: CONVOY_GUEST_KERNEL, or the one Debian's linux-image-amd64 depends on now."""
    if pinned := os.environ.get("CONVOY_GUEST_KERNEL"):
        return pinned
    for attempt in range(2):
        depends = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], capture_output=True, text=True).stdout
        for line in depends.splitlines():
            name = line.strip().removeprefix("Depends: ")
            if name.startswith("linux-image-") and name.endswith("-amd64") and name != "linux-image-amd64":
                return name.removeprefix("linux-image-")
        if attempt == 0 and os.geteuid() == 0:  # a fresh machine may have no package lists yet
            run("apt-get", "-q", "-o", "DPkg::Lock::Timeout=600", "update")
    raise GuestBuildError("apt-cache knows no linux-image-amd64 kernel: run apt-get update, or set CONVOY_GUEST_KERNEL")


@contextmanager
def build_lock(cache: Path) -> Iterator[None]:
    """One build at a time per cache: a second `run` waits for the first's image."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def cached(target: Path, build: Callable[[Path], None]) -> Path:
    """`target` if complete, else built in target.partial by `build` and renamed (a crash leaves no half layer)."""
    if (target / ".complete").exists():
        return target
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(target, ignore_errors=True)
    partial.mkdir(parents=True)
    log(f"building {target.name}")
    build(partial)
    (partial / ".complete").touch()
    partial.rename(target)
    return target


def build_kernel(version: str) -> Callable[[Path], None]:
    def build(out: Path) -> None:
        run("apt-get", "download", f"linux-image-{version}", cwd=out)
        debs = list(out.glob("linux-image-*.deb"))
        run("dpkg-deb", "-x", debs[0], out / "tree")
        debs[0].unlink()
        run("depmod", "-b", out / "tree", version)

    return build


def build_rootfs(out: Path) -> None:
    """debootstrap minbase, then the guest's packages without their recommends (no services started)."""
    root = out / "root"
    run("debootstrap", "--variant=minbase", SUITE, root, MIRROR)
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", PATH="/usr/sbin:/usr/bin:/sbin:/bin")
    run("chroot", root, "apt-get", "-q", "update", env=env)
    run("chroot", root, "apt-get", "-q", "install", "-y", "--no-install-recommends",
        *listed(INPUTS / "guest-packages.txt"), env=env)
    run("chroot", root, "apt-get", "clean", env=env)
    shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
    policy.unlink()
    (root / "etc/resolv.conf").unlink()


def project_requirements() -> list[str]:
    """pyproject.toml's runtime dependencies and its test extra: what the guest's tests import."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *project.get("optional-dependencies", {}).get("test", [])]


def build_wheelhouse(out: Path) -> None:
    """Wheels for the guest's CPython (bookworm's 3.11), whatever the host's Python is."""
    (out / "requirements.txt").write_text("\n".join(project_requirements()) + "\n")
    platforms = [arg for p in WHEEL_PLATFORMS for arg in ("--platform", p)]
    run(sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "-d", out, "--only-binary=:all:",
        *platforms, "--python-version", GUEST_PYTHON, "--implementation", "cp", "--abi", "cp311",
        "-r", out / "requirements.txt")


def build_initrd(kernel_tree: Path, version: str, out: Path) -> None:
    """busybox + the modules that mount the root image; its /init is image/initrd-init."""
    staging = out / "initrd"
    for d in ("bin", "dev", "proc", "sys", "newroot", "mods"):
        (staging / d).mkdir(parents=True)
    busybox = shutil.which("busybox")
    if busybox is None:
        raise GuestBuildError("busybox is missing on the host: apt-get install busybox-static")
    shutil.copy(busybox, staging / "bin/busybox")
    for applet in run(busybox, "--list").stdout.split():
        if applet != "busybox":
            (staging / "bin" / applet).symlink_to("busybox")
    modules: list[str] = []
    for name in INITRD_MODULES:  # --show-depends lists a module's dependencies first: load in that order
        shown = run("modprobe", "-d", kernel_tree, "-S", version, "--show-depends", name).stdout
        modules += [line.split()[1] for line in shown.splitlines() if line.startswith("insmod ")]
    for index, module in enumerate(dict.fromkeys(modules)):
        shutil.copy(module, staging / "mods" / f"{index:02d}-{Path(module).name}")
    shutil.copy(INPUTS / "initrd-init", staging / "init")
    (staging / "init").chmod(0o755)
    files = run("find", ".", cwd=staging).stdout
    cpio = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=staging, input=files.encode(),
                          capture_output=True, check=True).stdout
    (out / "initrd.img").write_bytes(cpio)
    shutil.rmtree(staging)


def build_root_image(rootfs: Path, kernel_tree: Path, version: str, wheels: Path, out: Path) -> None:
    """The rootfs plus the kernel's modules, a venv of the project's dependencies and guest-init, packed as ext4."""
    root = out / "root"
    run("cp", "-a", rootfs / "root", root)
    modules = root / "lib/modules"
    modules.mkdir(parents=True, exist_ok=True)
    excludes = [arg for d in UNUSED_MODULE_DIRS for arg in ("--exclude", f"{version}/kernel/{d}")]
    tar = subprocess.Popen(["tar", "-C", kernel_tree / "lib/modules", "-c", *excludes, version], stdout=subprocess.PIPE)
    run("tar", "-C", modules, "-x", stdin=tar.stdout)
    if tar.wait() != 0:
        raise GuestBuildError(f"could not copy the modules of kernel {version}")
    run("depmod", "-b", root, version)
    shutil.copytree(wheels, root / "tmp/wheels")
    run("chroot", root, "python3", "-m", "venv", VENV)
    run("chroot", root, f"{VENV}/bin/pip", "install", "-q", "--disable-pip-version-check", "--no-index",
        "--find-links", "/tmp/wheels", "-r", "/tmp/wheels/requirements.txt")
    shutil.rmtree(root / "tmp/wheels")
    shutil.copy(INPUTS / "guest-init", root / "sbin/convoy-guest-init")
    (root / "sbin/convoy-guest-init").chmod(0o755)
    (root / "etc/hostname").write_text("guest\n")
    used = int(run("du", "-s", "--block-size=1M", root).stdout.split()[0])
    run("truncate", "-s", f"{used + 1024}M", out / "root.img")  # sparse: room for the tests' writes
    run("mkfs.ext4", "-q", "-F", "-L", "guest-root", "-d", root, out / "root.img")
    shutil.copy(kernel_tree / f"boot/vmlinuz-{version}", out / "vmlinuz")
    shutil.rmtree(root)


def prune_unused_images(cache: Path, unused_for: float = 24 * 3600) -> None:
    """Remove images (~1.3 GiB each) no run used for a day. Not simply every other one: another
    checkout of the repository (a branch with other inputs) may be booting its own image right now."""
    for image in cache.glob("image-*"):
        stamp = image / ".complete"
        if not image.name.endswith(".partial") and stamp.exists() and time.time() - stamp.stat().st_mtime > unused_for:
            shutil.rmtree(image, ignore_errors=True)


def ensure_image() -> Image:
    """The cached image for the current inputs, built first if missing (root, ~3 min the first time)."""
    ensure_host_packages()
    cache = cache_root()
    version = kernel_version()
    rootfs_key = digest(SUITE, MIRROR, INPUTS / "guest-packages.txt")
    wheels_key = digest(GUEST_PYTHON, REPO / "pyproject.toml")
    image_key = digest(version, rootfs_key, wheels_key, INPUTS / "initrd-init", INPUTS / "guest-init", Path(__file__))
    target = cache / f"image-{image_key}"
    if not (target / ".complete").exists():
        if os.geteuid() != 0:
            raise GuestBuildError(f"the guest image {target} is not built and building it needs root")
        with build_lock(cache):
            kernel = cached(cache / f"kernel-{version}", build_kernel(version)) / "tree"
            rootfs = cached(cache / f"rootfs-{rootfs_key}", build_rootfs)
            wheels = cached(cache / f"wheels-{wheels_key}", build_wheelhouse)

            def build(out: Path) -> None:
                build_initrd(kernel, version, out)
                build_root_image(rootfs, kernel, version, wheels, out)

            cached(target, build)
            prune_unused_images(cache)
    (target / ".complete").touch()  # its last use, for prune_unused_images
    return Image(kernel=target / "vmlinuz", initrd=target / "initrd.img", root=target / "root.img")
