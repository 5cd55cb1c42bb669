"""The image back-end through the managed plugin: a hard size limit, growth, and restores across back-ends."""

from __future__ import annotations

import pytest

from tests.e2e.engine import PLUGIN, TEST_IMAGE

pytestmark = pytest.mark.e2e


def run_in(engine, volume_spec, script, check=True):
    return engine.docker("run", "--rm", "-v", volume_spec, TEST_IMAGE, "sh", "-c", script, check=check)


def test_an_image_volume_is_full_at_its_size_and_a_resize_lets_the_write_succeed(engine, vol):
    name = vol("capped")
    engine.docker("volume", "create", "-d", PLUGIN, "-o", "driver=image", "-o", "size=100M", name)
    full = run_in(engine, f"{name}:/data", "dd if=/dev/zero of=/data/big bs=1M count=200", check=False)
    assert full.returncode != 0 and "No space left on device" in full.stderr, full.stderr

    container = f"{name}-keeper"
    engine.docker("run", "-d", "--name", container, "-v", f"{name}:/data", TEST_IMAGE, "sleep", "600")
    try:
        resized = engine.convoy("resize", name, "300M")
        assert resized.stdout.split() == [name, "300M"]
        assert engine.inspect_volume(name)["Status"]["size"] == "300M"
        write = "rm -f /data/big; dd if=/dev/zero of=/data/big bs=1M count=200"
        if "grows when the volume is next mounted" not in resized.stderr:
            engine.docker("exec", container, "sh", "-c", write)  # grown online, under the running container
            return
    finally:
        engine.docker("rm", "-f", container, check=False)
    # This host does not let convoy grow a mounted ext4 (no CAP_SYS_RESOURCE): the next mount grows it.
    run_in(engine, f"{name}:/data", write)
    assert run_in(engine, f"{name}:/data", "stat -c %s /data/big").stdout.strip() == str(200 << 20)


def test_a_vfs_backup_restores_into_an_image_volume_and_back_through_docker(engine, vol):
    source = vol("tree")
    engine.docker("volume", "create", "-d", PLUGIN, source)
    run_in(engine, f"{source}:/data", "echo from-vfs > /data/f; mkdir /data/d; "
           "dd if=/dev/urandom of=/data/d/random bs=1M count=3 2>/dev/null; ln -s d/random /data/link")
    digest = run_in(engine, f"{source}:/data", "md5sum /data/d/random").stdout.split()[0]
    store = "vfs:///var/lib/convoy/e2e-store"  # inside the plugin: under its state mount

    snapshot = engine.convoy("snapshot", "create", source).stdout.strip()
    tree_url = engine.convoy("backup", "create", snapshot, "--dest", store).stdout.strip()
    as_image = vol("asimage")
    engine.docker("volume", "create", "-d", PLUGIN, "-o", f"backup={tree_url}", "-o", "driver=image",
                  "-o", "size=64M", as_image)
    assert engine.convoy_json("inspect", as_image)["driver"] == "image"
    assert run_in(engine, f"{as_image}:/data", "cat /data/f; readlink /data/link").stdout == "from-vfs\nd/random\n"
    assert run_in(engine, f"{as_image}:/data", "md5sum /data/d/random").stdout.split()[0] == digest

    snapshot = engine.convoy("snapshot", "create", as_image).stdout.strip()
    image_url = engine.convoy("backup", "create", snapshot, "--dest", store).stdout.strip()
    assert engine.convoy_json("backup", "inspect", image_url)["source"] == "image"
    back = vol("backtovfs")
    engine.docker("volume", "create", "-d", PLUGIN, "-o", f"backup={image_url}", "-o", "driver=vfs", back)
    assert "restoring_from" not in engine.inspect_volume(back)["Status"], "Docker's create returns once it is restored"
    assert (engine.volume_dir(back) / "f").read_text() == "from-vfs\n"
    assert run_in(engine, f"{back}:/data", "md5sum /data/d/random").stdout.split()[0] == digest
