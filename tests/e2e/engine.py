"""A real Docker engine with the Convoy plugin installed, driven as a user would.

Everything goes through the `docker` CLI and `make`, exactly as typed by a user;
the only extra is that the engine is a private one (ci/dockerd.sh) so the tests
never touch a Docker the machine may already run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PLUGIN = "convoy"  # installed as convoy:latest, so `-d convoy` names it
TEST_IMAGE = "convoy-test-busybox:latest"


class CommandFailed(AssertionError):
    pass


def mountpoints() -> set[str]:
    """Mount points of this (the host's) mount namespace."""
    points = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            points.add(line.split()[4].replace("\\040", " "))
    return points


def wait_for(what: str, check, timeout: float = 60, interval: float = 0.5):
    """Poll `check` until it returns a truthy value; fail with `what` on time-out."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except CommandFailed as error:
            last = error
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


class Engine:
    def __init__(self, root: Path, dockerd_args: str = ""):
        """`dockerd_args`: extra dockerd flags (a second engine on the machine: `--bridge none --iptables=false`)."""
        self.root = root
        self.state = root / "state"  # the plugin's `state` mount source
        self.control = root / "control"  # the plugin's `control` mount source
        self.socket = root / "docker.sock"
        self.env = dict(os.environ, DOCKER_HOST=f"unix://{self.socket}", CONVOY_CI_ROOT=str(root))
        self.env["CONVOY_SOCKET"] = str(self.control / "convoy.sock")
        if dockerd_args:
            self.env["CONVOY_CI_DOCKERD_ARGS"] = dockerd_args
        self.convoy_bin = shutil.which("convoy") or str(REPO / ".venv" / "bin" / "convoy")

    # -- running commands -------------------------------------------------
    def run(self, *argv, check=True, timeout=300, input=None) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(a) for a in argv], env=self.env, cwd=REPO, input=input,
            capture_output=True, text=True, timeout=timeout,
        )
        if check and result.returncode != 0:
            raise CommandFailed(
                f"{' '.join(map(str, argv))} exited {result.returncode}\n"
                f"stdout: {result.stdout[-3000:]}\nstderr: {result.stderr[-3000:]}"
            )
        return result

    def docker(self, *args, **kw) -> subprocess.CompletedProcess:
        return self.run("docker", *args, **kw)

    def convoy(self, *args, **kw) -> subprocess.CompletedProcess:
        return self.run(self.convoy_bin, *args, **kw)

    def convoy_json(self, *args):
        return json.loads(self.convoy(*args, "--json").stdout)

    # -- engine lifecycle ---------------------------------------------------
    def start(self):
        self.run("bash", "ci/dockerd.sh", "start", timeout=120)

    def stop(self):
        self.run("bash", "ci/dockerd.sh", "stop", timeout=120)

    def restart(self):
        self.run("bash", "ci/dockerd.sh", "restart", timeout=240)
        wait_for("the plugin to be enabled after the engine restart", self.plugin_enabled, timeout=60)

    def install_plugin(self, *settings: str, build: bool = True):
        """`make install`, as the README tells users, with this engine's host paths; `build=False`: from the
        bundle an earlier install built (`make install-bundle`)."""
        self.state.mkdir(parents=True, exist_ok=True)
        self.control.mkdir(parents=True, exist_ok=True)
        extra = [f"PLUGIN_SETTINGS={' '.join(settings)}"] if settings else []
        self.run(
            "make", "--no-print-directory", "install" if build else "install-bundle", f"NAME={PLUGIN}", "TAG=latest",
            f"PLUGIN_STATE={self.state}", f"PLUGIN_CONTROL={self.control}", *extra,
            timeout=900,
        )

    def configure_plugin(self, settings: dict[str, str]) -> None:
        """disable, `docker plugin set` each KEY=VALUE, enable: how a user switches the plugin's settings."""
        self.docker("plugin", "disable", "-f", PLUGIN)
        self.docker("plugin", "set", PLUGIN, *(f"{k}={v}" for k, v in settings.items()))
        self.docker("plugin", "enable", "--timeout", "120", PLUGIN)

    @contextmanager
    def plugin_set(self, settings: dict[str, str]) -> Iterator[None]:
        """The plugin with `settings` for a while; after, every container removed and the session's settings back
        (DRIVER=vfs,image, the others empty)."""
        self.configure_plugin(settings)
        try:
            yield
        finally:
            ids = self.docker("ps", "-aq").stdout.split()
            if ids:
                self.docker("rm", "-f", *ids, check=False)
            self.configure_plugin({**dict.fromkeys(settings, ""), "DRIVER": "vfs,image"})

    def reset(self):
        """Remove what an earlier, interrupted run may have left in this engine."""
        self.docker("swarm", "leave", "--force", check=False)
        ids = self.docker("ps", "-aq").stdout.split()
        if ids:
            self.docker("rm", "-f", *ids)
        for plugin in self.docker("plugin", "ls", "--format", "{{.Name}}").stdout.split():
            self.docker("plugin", "rm", "-f", plugin)
        vols = self.docker("volume", "ls", "-q").stdout.split()
        if vols:
            self.docker("volume", "rm", "-f", *vols, check=False)
        for d in (self.state, self.control):
            if d.exists():
                shutil.rmtree(d)

    def unmount_leftovers(self):
        """After the engine stopped: nothing of ours may stay mounted."""
        prefix = str(self.root) + "/"
        for point in sorted((p for p in mountpoints() if p.startswith(prefix)), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)

    # -- what a user looks at -----------------------------------------------
    def plugin_enabled(self) -> bool:
        r = self.docker("plugin", "inspect", "-f", "{{.Enabled}}", PLUGIN, check=False)
        return r.returncode == 0 and r.stdout.strip() == "true"

    def plugin_id(self) -> str:
        return self.docker("plugin", "inspect", "-f", "{{.Id}}", PLUGIN).stdout.strip()

    def plugin_env(self) -> dict[str, str]:
        env = json.loads(self.docker("plugin", "inspect", "-f", "{{json .Settings.Env}}", PLUGIN).stdout)
        return dict(item.split("=", 1) for item in env)

    def plugin_pids(self) -> list[int]:
        """Host pids of the plugin's `convoy daemon`: in the plugin's cgroup, or
        below the containerd shim that runs the plugin's task."""
        plugin_id = self.plugin_id()
        procs = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                cgroup = Path(f"/proc/{entry}/cgroup").read_text()
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            procs[int(entry)] = (cgroup, cmdline, ppid)

        def is_daemon(cmdline):
            return "convoy" in cmdline and " daemon" in cmdline

        pids = [p for p, (cg, cmd, _) in procs.items() if plugin_id in cg and is_daemon(cmd)]
        if pids:
            return pids
        shims = {p for p, (_, cmd, _) in procs.items() if "containerd-shim" in cmd and plugin_id in cmd}

        def below_shim(pid, depth=0):
            parent = procs.get(pid, (None, None, 0))[2]
            return parent in shims or (depth < 5 and parent in procs and below_shim(parent, depth + 1))

        return [p for p, (_, cmd, _) in procs.items() if is_daemon(cmd) and below_shim(p)]

    def host_mountpoint(self, volume: str) -> str:
        """Where the host (and so Docker) sees the volume mounted: the propagated mount."""
        return str(self.root / "data" / "plugins" / self.plugin_id() / "propagated-mount" / volume)

    def host_mounted(self, volume: str) -> bool:
        return self.host_mountpoint(volume) in mountpoints()

    def volume_dir(self, volume: str) -> Path:
        """The VFS directory of a volume on the host (default vfs.path = <state>/vfs)."""
        return self.state / "vfs" / volume

    def volumes(self, driver_prefix: str = PLUGIN) -> set[str]:
        out = self.docker("volume", "ls", "--format", "{{.Driver}} {{.Name}}").stdout
        return {line.split()[1] for line in out.splitlines() if line.split()[0].split(":")[0] == driver_prefix}

    def inspect_volume(self, name: str) -> dict:
        return json.loads(self.docker("volume", "inspect", name).stdout)[0]

    def logs(self) -> str:
        try:
            return (self.root / "dockerd.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""
