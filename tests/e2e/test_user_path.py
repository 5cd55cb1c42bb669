"""The user's path through the Convoy managed plugin, on a real Docker engine.

Every step is a `docker` (or host `convoy`) command as a user types it; the
assertions are what that user would check: listings, inspect output, file
contents seen by containers and on the host, and mounts on the host.
Tests run in file order; each uses its own volumes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time

import pytest

from tests.e2e.engine import PLUGIN, REPO, TEST_IMAGE, wait_for

pytestmark = pytest.mark.e2e


def run_in(engine, volume_spec, script, *extra):
    """docker run --rm -v SPEC busybox sh -c SCRIPT; returns stdout."""
    return engine.docker("run", "--rm", *extra, "-v", volume_spec, TEST_IMAGE, "sh", "-c", script).stdout


# -- docker volume create / ls / inspect ------------------------------------------

def test_volume_create_is_listed_and_inspect_shows_status(engine, vol):
    name = vol()
    assert engine.docker("volume", "create", "-d", PLUGIN, name).stdout.strip() == name

    assert name in engine.volumes()
    info = engine.inspect_volume(name)
    assert info["Driver"] == f"{PLUGIN}:latest"
    assert info["Mountpoint"].startswith("/mnt/convoy/")  # under the plugin's propagated mount
    assert info["CreatedAt"]
    status = info["Status"]
    assert status["driver"] == "vfs"
    assert status["mount_refs"] == 0 and status["mounted"] is False
    assert engine.volume_dir(name).is_dir(), "the VFS directory lives in the plugin's state mount on the host"


def test_volume_create_with_size_records_it(engine, vol):
    name = vol("sized")
    engine.docker("volume", "create", "-d", PLUGIN, "-o", "size=1G", name)
    assert engine.inspect_volume(name)["Status"]["size"] == "1G"
    assert engine.convoy_json("inspect", name)["size"] == 1 << 30


def test_volume_create_with_unknown_option_fails_with_the_plugins_message(engine, vol):
    name = vol("bad")
    r = engine.docker("volume", "create", "-d", PLUGIN, "-o", "colour=blue", name, check=False)
    assert r.returncode != 0
    # The plugin's own message reaches the user: the bad option and the valid ones.
    assert "unknown option colour" in r.stderr, r.stderr
    assert "size" in r.stderr, r.stderr
    assert name not in engine.volumes()
    assert not engine.volume_dir(name).exists()


# -- docker run ----------------------------------------------------------------------

def test_a_container_writes_and_a_second_reads_it_back(engine, vol):
    name = vol("rw")
    engine.docker("volume", "create", "-d", PLUGIN, name)
    run_in(engine, f"{name}:/data", "echo 'written by the first container' > /data/hello.txt")
    assert run_in(engine, f"{name}:/data", "cat /data/hello.txt") == "written by the first container\n"
    assert (engine.volume_dir(name) / "hello.txt").read_text() == "written by the first container\n"
    # The last container is gone: the volume is no longer mounted on the host.
    assert not engine.host_mounted(name)
    assert engine.inspect_volume(name)["Status"]["mount_refs"] == 0


def test_two_containers_share_a_volume_and_one_stopping_leaves_the_other_its_data(engine, vol):
    name = vol("shared")
    engine.docker("volume", "create", "-d", PLUGIN, name)
    engine.docker("run", "-d", "--name", "e2e-share-a", "-v", f"{name}:/data", TEST_IMAGE,
                  "sh", "-c", "echo from-a > /data/a.txt; exec sleep 600")
    engine.docker("run", "-d", "--name", "e2e-share-b", "-v", f"{name}:/data", TEST_IMAGE, "sleep", "600")
    try:
        wait_for("container b to see a's file",
                 lambda: engine.docker("exec", "e2e-share-b", "cat", "/data/a.txt").stdout == "from-a\n")
        assert engine.inspect_volume(name)["Status"]["mount_refs"] == 2
        assert engine.host_mounted(name)

        engine.docker("stop", "-t", "1", "e2e-share-a")
        engine.docker("rm", "e2e-share-a")

        # b still has the volume mounted, with its data, and can write.
        assert engine.host_mounted(name)
        assert engine.docker("exec", "e2e-share-b", "cat", "/data/a.txt").stdout == "from-a\n"
        engine.docker("exec", "e2e-share-b", "sh", "-c", "echo from-b > /data/b.txt")
        assert (engine.volume_dir(name) / "b.txt").read_text() == "from-b\n"
        assert engine.inspect_volume(name)["Status"]["mount_refs"] == 1
    finally:
        engine.docker("rm", "-f", "e2e-share-a", "e2e-share-b", check=False)
    # The last reference went: unmounted on the host, data kept.
    assert not engine.host_mounted(name)
    assert engine.inspect_volume(name)["Status"]["mount_refs"] == 0
    assert (engine.volume_dir(name) / "a.txt").exists()


# -- removing: docker run --rm, docker rm -v, docker volume rm ----------------------

def _mounts(engine, container):
    return json.loads(engine.docker("inspect", "-f", "{{json .Mounts}}", container).stdout)


def test_run_rm_removes_its_anonymous_volume_and_keeps_named_ones(engine, vol):
    named = vol("named")
    engine.docker("volume", "create", "-d", PLUGIN, named)
    engine.docker("run", "-d", "--rm", "--name", "e2e-rm", "--volume-driver", PLUGIN,
                  "-v", "/anon", "-v", f"{named}:/named", TEST_IMAGE,
                  "sh", "-c", "echo x > /anon/x; echo y > /named/y; exec sleep 600")
    mounts = {m["Destination"]: m for m in _mounts(engine, "e2e-rm")}
    anon = mounts["/anon"]["Name"]
    assert mounts["/anon"]["Driver"] == f"{PLUGIN}:latest"
    wait_for("the anonymous volume's file on the host", lambda: (engine.volume_dir(anon) / "x").exists())
    assert anon in engine.volumes()

    engine.docker("stop", "-t", "1", "e2e-rm")
    wait_for("--rm to remove the container",
             lambda: engine.docker("ps", "-aq", "-f", "name=e2e-rm").stdout.strip() == "")
    wait_for("--rm to remove the anonymous volume", lambda: anon not in engine.volumes())
    # VFS on local disk: removing the volume through Docker deletes its data.
    assert not engine.volume_dir(anon).exists()
    assert anon not in {v["name"] for v in engine.convoy_json("list")}
    # The named volume stays, with its data.
    assert named in engine.volumes()
    assert (engine.volume_dir(named) / "y").read_text() == "y\n"


def test_rm_v_removes_the_containers_anonymous_volume(engine):
    engine.docker("run", "--name", "e2e-rmv", "--volume-driver", PLUGIN, "-v", "/data", TEST_IMAGE,
                  "sh", "-c", "echo kept-until-rm > /data/f")
    anon = _mounts(engine, "e2e-rmv")[0]["Name"]
    assert (engine.volume_dir(anon) / "f").read_text() == "kept-until-rm\n"
    assert anon in engine.volumes()
    engine.docker("rm", "-v", "e2e-rmv")
    assert anon not in engine.volumes()
    assert not engine.volume_dir(anon).exists()


def test_volume_rm_refuses_while_in_use_then_deletes(engine, vol):
    name = vol("rm")
    engine.docker("volume", "create", "-d", PLUGIN, name)
    engine.docker("run", "-d", "--name", "e2e-inuse", "-v", f"{name}:/data", TEST_IMAGE,
                  "sh", "-c", "echo data > /data/f; exec sleep 600")
    try:
        wait_for("the file", lambda: (engine.volume_dir(name) / "f").exists())
        r = engine.docker("volume", "rm", name, check=False)
        assert r.returncode != 0 and "in use" in r.stderr, r.stderr
        assert (engine.volume_dir(name) / "f").read_text() == "data\n"
    finally:
        engine.docker("rm", "-f", "e2e-inuse", check=False)
    engine.docker("volume", "rm", name)
    assert name not in engine.volumes()
    assert name not in {v["name"] for v in engine.convoy_json("list")}
    assert not engine.volume_dir(name).exists(), "VFS on local disk: docker volume rm deletes the data"


def test_volume_rm_on_shared_vfs_deletes_only_the_reference(engine, vol):
    """VFS on shared storage (NFS, or vfs.shared=true): Docker's remove keeps the data, as Convoy did."""
    name = vol("shared-rm")
    engine.docker("plugin", "disable", "-f", PLUGIN)
    engine.docker("plugin", "set", PLUGIN, "DRIVER_OPTS=vfs.shared=true")
    engine.docker("plugin", "enable", "--timeout", "120", PLUGIN)
    try:
        engine.docker("volume", "create", "-d", PLUGIN, name)
        assert engine.inspect_volume(name)["Status"]["backend.shared"] is True
        run_in(engine, f"{name}:/data", "echo on-shared-storage > /data/f")

        engine.docker("volume", "rm", name)
        assert name not in engine.volumes()
        assert name not in {v["name"] for v in engine.convoy_json("list")}
        assert (engine.volume_dir(name) / "f").read_text() == "on-shared-storage\n", "the data stays"

        # Creating it again (here, or on another host sharing the path) adopts the data.
        engine.docker("volume", "create", "-d", PLUGIN, name)
        assert run_in(engine, f"{name}:/data", "cat /data/f") == "on-shared-storage\n"
        engine.convoy("delete", name)  # convoy delete removes the data too
        assert not engine.volume_dir(name).exists()
    finally:
        engine.docker("plugin", "disable", "-f", PLUGIN, check=False)
        engine.docker("plugin", "set", PLUGIN, "DRIVER_OPTS=")
        engine.docker("plugin", "enable", "--timeout", "120", PLUGIN)


# -- the host's convoy CLI through the control socket ------------------------------

def test_host_convoy_cli_sees_and_manages_the_same_volumes(engine, vol):
    from_docker = vol("fromdocker")
    engine.docker("volume", "create", "-d", PLUGIN, "-o", "size=512M", from_docker)
    listed = {v["name"]: v for v in engine.convoy_json("list")}
    assert from_docker in listed
    assert engine.convoy("list").stdout.count(from_docker) == 1  # the table for people
    shown = engine.convoy_json("inspect", from_docker)
    assert shown["driver"] == "vfs" and shown["size"] == 512 << 20

    from_cli = vol("fromcli")
    engine.convoy("create", from_cli, "--size", "2G")
    assert from_cli in engine.volumes(), "a volume made with the convoy CLI is listed by docker"
    run_in(engine, f"{from_cli}:/data", "echo via-cli > /data/f")
    assert (engine.volume_dir(from_cli) / "f").read_text() == "via-cli\n"
    assert engine.inspect_volume(from_cli)["Status"]["size"] == "2G"

    engine.convoy("delete", from_cli)
    assert from_cli not in {v["name"] for v in engine.convoy_json("list")}
    assert not engine.volume_dir(from_cli).exists()
    assert from_cli not in engine.volumes()


def test_host_convoy_cli_without_daemon_says_how_to_reach_it(engine, tmp_path):
    sock = tmp_path / "nothing.sock"
    r = engine.convoy("--socket", str(sock), "list", check=False)
    assert r.returncode != 0
    # One line that names the socket it tried, not a traceback.
    assert str(sock) in r.stderr and "Traceback" not in r.stderr, r.stderr


# -- backups from inside the plugin to S3 (host network), restored through Docker ------

@pytest.fixture
def e2e_bucket(engine, s3_endpoint):
    """A bucket on the real S3-compatible endpoint (moto's server on 127.0.0.1)."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                          aws_access_key_id="e2e", aws_secret_access_key="e2e")
    client.create_bucket(Bucket="convoy-e2e")
    return s3_endpoint, client


def test_backup_to_s3_from_the_plugin_and_restore_with_docker_volume_create(engine, vol, e2e_bucket):
    endpoint, client = e2e_bucket
    engine.docker("plugin", "disable", "-f", PLUGIN)
    engine.docker("plugin", "set", PLUGIN, f"S3_ENDPOINT={endpoint}", "AWS_ACCESS_KEY_ID=e2e",
                  "AWS_SECRET_ACCESS_KEY=e2e", "AWS_REGION=us-east-1")
    engine.docker("plugin", "enable", "--timeout", "120", PLUGIN)
    try:
        name = vol("backup")
        engine.docker("volume", "create", "-d", PLUGIN, name)
        run_in(engine, f"{name}:/data", "echo back-me-up > /data/f; mkdir /data/d; "
               "dd if=/dev/urandom of=/data/d/random bs=1M count=3 2>/dev/null")
        digest = run_in(engine, f"{name}:/data", "md5sum /data/d/random").split()[0]

        snapshot = engine.convoy("snapshot", "create", name).stdout.strip()
        url = engine.convoy("backup", "create", snapshot, "--dest", "s3://convoy-e2e@us-east-1/e2e").stdout.strip()
        assert url.startswith("s3://convoy-e2e@us-east-1/e2e")
        # The plugin reached the endpoint on the host's loopback: host networking works.
        assert client.list_objects_v2(Bucket="convoy-e2e", Prefix="e2e/")["KeyCount"] > 0
        assert "intact" in engine.convoy("backup", "verify", url).stdout

        restored = vol("restored")
        engine.docker("volume", "create", "-d", PLUGIN, "-o", f"backup={url}", restored)
        assert run_in(engine, f"{restored}:/data", "cat /data/f") == "back-me-up\n"
        assert run_in(engine, f"{restored}:/data", "md5sum /data/d/random").split()[0] == digest
    finally:
        engine.docker("plugin", "disable", "-f", PLUGIN, check=False)
        engine.docker("plugin", "set", PLUGIN, "S3_ENDPOINT=", "AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=",
                      "AWS_REGION=")
        engine.docker("plugin", "enable", "--timeout", "120", PLUGIN)


# -- docker plugin disable / set / enable --------------------------------------------

def test_plugin_set_takes_effect_and_the_catalog_survives(engine, vol):
    keep = vol("keep")
    engine.docker("volume", "create", "-d", PLUGIN, "-o", "size=1G", keep)
    run_in(engine, f"{keep}:/data", "echo survives > /data/f")
    before = engine.volumes()

    # Volumes exist, so Docker counts the plugin in use: disable needs -f (nothing is mounted).
    r = engine.docker("plugin", "disable", PLUGIN, check=False)
    assert r.returncode != 0 and "in use" in r.stderr
    engine.docker("plugin", "disable", "-f", PLUGIN)
    engine.docker("plugin", "set", PLUGIN, "DRIVER=vfs", "IGNORE_DOCKER_DELETE=true",
                  "DRIVER_OPTS=vfs.path=/var/lib/convoy/vfs")
    started = time.monotonic()
    engine.docker("plugin", "enable", "--timeout", "120", PLUGIN)
    took = time.monotonic() - started
    try:
        # Docker gives a starting plugin ~12 s to bind its socket; stay well inside that.
        assert took < 8, f"docker plugin enable took {took:.1f} s"
        env = engine.plugin_env()
        assert env["IGNORE_DOCKER_DELETE"] == "true" and env["DRIVER_OPTS"] == "vfs.path=/var/lib/convoy/vfs"
        # The catalog survived: every volume is listed, with its options and data.
        assert before <= engine.volumes()
        assert engine.inspect_volume(keep)["Status"]["size"] == "1G"
        assert run_in(engine, f"{keep}:/data", "cat /data/f") == "survives\n"
        # The setting took effect: docker volume rm leaves the volume and its data alone.
        engine.docker("volume", "rm", keep)
        assert (engine.volume_dir(keep) / "f").read_text() == "survives\n"
        assert keep in {v["name"] for v in engine.convoy_json("list")}
        assert keep in engine.volumes(), "the plugin still lists it, so docker shows it again"
    finally:
        engine.docker("plugin", "disable", "-f", PLUGIN, check=False)
        engine.docker("plugin", "set", PLUGIN, "IGNORE_DOCKER_DELETE=false", "DRIVER_OPTS=")
        engine.docker("plugin", "enable", "--timeout", "120", PLUGIN)
    engine.docker("volume", "rm", keep)
    assert not engine.volume_dir(keep).exists()


def test_plugin_set_that_would_strand_volumes_is_refused_with_the_reason(engine, vol):
    stranded = vol("stranded")
    engine.docker("volume", "create", "-d", PLUGIN, stranded)
    engine.docker("plugin", "disable", "-f", PLUGIN)
    engine.docker("plugin", "set", PLUGIN, "DRIVER_OPTS=vfs.path=/var/lib/convoy/elsewhere")
    try:
        log_start = len(engine.logs())
        r = engine.docker("plugin", "enable", "--timeout", "60", PLUGIN, check=False)
        assert r.returncode != 0, "the plugin must not start with settings that cannot reach existing volumes"
        # Docker only says it could not dial; the plugin's reason is in the engine's log.
        reason = engine.logs()[log_start:]
        assert "cannot reach these volumes" in reason and stranded in reason, reason[-2000:]
        # the host's convoy CLI says why, where Docker could only say it could not dial
        told = engine.convoy("list", check=False)
        assert told.returncode == 5 and "refused to start" in told.stderr and stranded in told.stderr, told.stderr
    finally:
        engine.docker("plugin", "disable", "-f", PLUGIN, check=False)
        engine.docker("plugin", "set", PLUGIN, "DRIVER_OPTS=")
        engine.docker("plugin", "enable", "--timeout", "120", PLUGIN)
    assert stranded in engine.volumes()


# -- the plugin process dies while a container uses a volume -----------------------

def test_killed_plugin_is_restarted_and_the_container_keeps_its_data(engine, vol):
    name = vol("kill")
    engine.docker("volume", "create", "-d", PLUGIN, name)
    engine.docker("run", "-d", "--name", "e2e-kill", "-v", f"{name}:/data", TEST_IMAGE,
                  "sh", "-c", "echo before > /data/before.txt; exec sleep 600")
    try:
        wait_for("the container's file", lambda: (engine.volume_dir(name) / "before.txt").exists())
        old = engine.plugin_pids()
        assert old, "the plugin's daemon process is running"
        for pid in old:
            os.kill(pid, signal.SIGKILL)
        new = wait_for("Docker to restart the plugin", lambda: [p for p in engine.plugin_pids() if p not in old])
        assert new
        # The container still has its data and can write.
        assert engine.docker("exec", "e2e-kill", "cat", "/data/before.txt").stdout == "before\n"
        engine.docker("exec", "e2e-kill", "sh", "-c", "echo after > /data/after.txt")
        assert (engine.volume_dir(name) / "after.txt").read_text() == "after\n"
        # The restarted plugin answers and remembers the container's mount reference.
        status = wait_for("the plugin to answer", lambda: engine.inspect_volume(name)["Status"])
        assert status["mount_refs"] == 1 and status["mounted"] is True
        assert engine.host_mounted(name)
    finally:
        engine.docker("rm", "-f", "e2e-kill", check=False)
    # The next Unmount is handled: released and unmounted, so the volume can be removed.
    assert not engine.host_mounted(name)
    assert engine.inspect_volume(name)["Status"]["mount_refs"] == 0
    engine.docker("volume", "rm", name)
    assert not engine.volume_dir(name).exists()


# -- dockerd restarts -------------------------------------------------------------------

def test_engine_restart_keeps_every_volume_listed_and_usable(engine, vol):
    name = vol("restart")
    engine.docker("volume", "create", "-d", PLUGIN, "-o", "size=3G", name)
    run_in(engine, f"{name}:/data", "echo before-restart > /data/f")
    before = engine.volumes()
    assert name in before

    engine.restart()

    assert engine.volumes() == before
    assert engine.inspect_volume(name)["Status"]["size"] == "3G"
    assert run_in(engine, f"{name}:/data", "cat /data/f") == "before-restart\n"
    run_in(engine, f"{name}:/data", "echo after-restart >> /data/f")
    assert (engine.volume_dir(name) / "f").read_text() == "before-restart\nafter-restart\n"


# -- a one-node swarm -------------------------------------------------------------------

def test_swarm_service_creates_its_volume_through_the_plugin(engine, vol):
    name = vol("swarm")
    engine.docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    try:
        engine.docker(
            "service", "create", "--detach", "--no-resolve-image", "--name", "e2e-svc",
            "--restart-condition", "none",
            "--mount", f"type=volume,source={name},destination=/data,volume-driver={PLUGIN},volume-opt=size=1G",
            TEST_IMAGE, "sh", "-c", "echo from-swarm > /data/svc.txt; exec sleep 600",
        )
        wait_for("the service's task to run", lambda: "Running" in engine.docker(
            "service", "ps", "--format", "{{.CurrentState}}", "e2e-svc").stdout, timeout=120)
        wait_for("the task's write on the host",
                 lambda: (engine.volume_dir(name) / "svc.txt").exists() and
                 (engine.volume_dir(name) / "svc.txt").read_text() == "from-swarm\n")
        shown = engine.convoy_json("inspect", name)
        assert shown["size"] == 1 << 30, "volume-opt=size=1G reached the plugin"
        assert shown["mount_refs"] == 1 and shown["mounted"] is True
        assert name in engine.volumes()
    finally:
        engine.docker("service", "rm", "e2e-svc", check=False)
        wait_for("the task's container to go",
                 lambda: engine.docker("ps", "-aq", "-f", "label=com.docker.swarm.service.name=e2e-svc").stdout.strip() == "",
                 timeout=60)
        engine.docker("swarm", "leave", "--force")
    assert not engine.host_mounted(name)
    assert engine.convoy_json("inspect", name)["mount_refs"] == 0


# -- reinstalling the plugin -----------------------------------------------------------

def test_plugin_rm_and_reinstall_keeps_every_volume(engine, vol):
    name = vol("reinstall")
    engine.docker("volume", "create", "-d", PLUGIN, "-o", "size=1G", name)
    run_in(engine, f"{name}:/data", "echo before-reinstall > /data/f")
    before = engine.volumes()
    old_id = engine.plugin_id()

    engine.docker("plugin", "disable", "-f", PLUGIN)
    engine.docker("plugin", "rm", "-f", PLUGIN)
    engine.install_plugin()

    assert engine.plugin_id() != old_id, "a new plugin was installed"
    assert engine.volumes() == before
    assert engine.inspect_volume(name)["Status"]["size"] == "1G"
    assert run_in(engine, f"{name}:/data", "cat /data/f") == "before-reinstall\n"


# -- docker plugin upgrade / install, through a registry on 127.0.0.1 -------------------

@pytest.fixture(scope="module")
def next_release(engine, tmp_path_factory):
    """A registry on 127.0.0.1 holding the next release: the same bundle with a
    release marker and its own description. Yields its reference."""
    engine.env["CONVOY_REGISTRY_ROOT"] = str(engine.root / "registry")
    shutil.rmtree(engine.root / "registry" / "data", ignore_errors=True)  # earlier sessions' releases
    addr = engine.run("bash", "ci/registry.sh", "addr").stdout.strip()
    engine.run("bash", "ci/registry.sh", "start", timeout=600)
    try:
        bundle = tmp_path_factory.mktemp("next") / "bundle"
        if engine.run("cp", "-al", REPO / "plugin" / "build" / "bundle", bundle, check=False).returncode:
            engine.run("cp", "-a", REPO / "plugin" / "build" / "bundle", bundle)
        (bundle / "rootfs" / "etc" / "convoy-release").write_text("next\n")
        config = json.loads((REPO / "plugin" / "config.json").read_text())
        config["description"] += " (next)"
        (bundle / "config.json").unlink()
        (bundle / "config.json").write_text(json.dumps(config))
        ref = f"{addr}/convoy:next"
        engine.docker("plugin", "create", ref, bundle)
        engine.docker("plugin", "push", ref, timeout=600)
        engine.docker("plugin", "rm", ref)
        yield ref
    finally:
        engine.run("bash", "ci/registry.sh", "stop", check=False)


def _release(engine):
    ref, description = engine.docker("plugin", "inspect", "-f", "{{.PluginReference}}|{{.Config.Description}}",
                                     PLUGIN).stdout.strip().split("|")
    return ref, description


def test_plugin_upgrade_keeps_every_volume_and_setting(engine, vol, next_release):
    name = vol("upgrade")
    engine.docker("volume", "create", "-d", PLUGIN, "-o", "size=2G", name)
    run_in(engine, f"{name}:/data", "echo before-upgrade > /data/f")
    before = engine.volumes()

    engine.docker("plugin", "disable", "-f", PLUGIN)
    engine.docker("plugin", "set", PLUGIN, "DEFAULT_SIZE=5G")
    # `upgrade` asks to confirm that the images differ: the user answers y.
    out = engine.docker("plugin", "upgrade", "--grant-all-permissions", PLUGIN, next_release,
                        input="y\n", timeout=600).stdout
    assert f"Upgraded plugin {PLUGIN}:latest to {next_release}" in out
    # Docker 20.10 starts an upgraded plugin with the manifest's default mount
    # sources while still showing the old ones; the README tells users to set them again.
    engine.docker("plugin", "set", PLUGIN, f"state.source={engine.state}", f"control.source={engine.control}")
    engine.docker("plugin", "enable", "--timeout", "120", PLUGIN)

    ref, description = _release(engine)
    assert ref == next_release and description.endswith("(next)")
    assert engine.plugin_env()["DEFAULT_SIZE"] == "5G", "settings survive the upgrade"
    # Every volume is still there, with its options and its data, and usable.
    assert engine.volumes() == before
    assert engine.inspect_volume(name)["Status"]["size"] == "2G"
    assert run_in(engine, f"{name}:/data", "cat /data/f") == "before-upgrade\n"
    fresh = vol("afterupgrade")
    engine.docker("volume", "create", "-d", PLUGIN, fresh)
    assert run_in(engine, f"{fresh}:/data", "echo ok > /data/f; cat /data/f") == "ok\n"


def test_plugin_install_from_a_registry_with_settings_finds_every_volume(engine, vol, next_release):
    name = vol("install")
    engine.docker("volume", "create", "-d", PLUGIN, name)
    run_in(engine, f"{name}:/data", "echo before-install > /data/f")
    before = engine.volumes()
    engine.docker("plugin", "disable", "-f", PLUGIN)
    engine.docker("plugin", "rm", "-f", PLUGIN)

    # How users install a released plugin: settings given on the install line.
    engine.docker("plugin", "install", "--grant-all-permissions", "--alias", PLUGIN, next_release,
                  f"state.source={engine.state}", f"control.source={engine.control}", "DEFAULT_SIZE=7G",
                  timeout=600)
    assert engine.plugin_enabled()
    assert _release(engine)[0] == next_release
    assert engine.plugin_env()["DEFAULT_SIZE"] == "7G"
    assert engine.volumes() == before
    assert run_in(engine, f"{name}:/data", "cat /data/f") == "before-install\n"
    assert name in {v["name"] for v in engine.convoy_json("list")}
