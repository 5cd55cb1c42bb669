"""A two-node swarm of two engines on this machine, and a service whose task moves from one to the other.

Both engines share the machine's address: the second listens for the swarm on its own port. Its memberlist
(gossip) port clashes with the first's, which only overlay networks need; a service without one runs fine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tests.e2e.engine import PLUGIN, TEST_IMAGE, Engine, wait_for

SERVICE = "e2e-follow"


@contextmanager
def two_node_swarm(manager: Engine, worker: Engine) -> Iterator[tuple[str, str]]:
    """`manager` inits a swarm, `worker` joins it; yields their node ids; both leave after."""
    manager.docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    try:
        token = manager.docker("swarm", "join-token", "-q", "worker").stdout.strip()
        worker.docker("swarm", "join", "--token", token, "--listen-addr", "127.0.0.1:2378",
                      "--advertise-addr", "127.0.0.1:2378", "127.0.0.1:2377", timeout=120)
        yield tuple(e.docker("info", "--format", "{{.Swarm.NodeID}}").stdout.strip() for e in (manager, worker))
    finally:
        worker.docker("swarm", "leave", "--force", check=False)
        manager.docker("swarm", "leave", "--force", check=False)


def volume_follows_its_task(
    first: Engine, second: Engine, volume: str, holders: Callable[[], list], first_host, second_host
) -> None:
    """A service with `volume` runs on `first`, then is moved to `second`: the task there reads what the first
    wrote. `holders()` says which host the back-end has the volume attached to (`first_host`, then `second_host`)."""
    with two_node_swarm(first, second) as (node_a, node_b):
        try:
            first.docker(
                "service", "create", "--detach", "--no-resolve-image", "--name", SERVICE,
                "--constraint", f"node.id=={node_a}",
                "--mount", f"type=volume,source={volume},destination=/data,volume-driver={PLUGIN},volume-opt=size=1G",
                TEST_IMAGE, "sh", "-c", "echo task-ran >> /data/log; exec sleep 600",
            )
            wait_for("the task on the first host to write", lambda: task_reads(first, "/data/log") == "task-ran\n",
                     timeout=120)
            assert holders() == [first_host]

            first.docker("service", "update", "--detach", "--constraint-rm", f"node.id=={node_a}",
                         "--constraint-add", f"node.id=={node_b}", SERVICE)
            wait_for("the task on the second host to read the first one's write",
                     lambda: task_reads(second, "/data/log") == "task-ran\ntask-ran\n", timeout=180)
            assert holders() == [second_host]
            assert not first.host_mounted(volume), "the first host let it go"
        finally:
            first.docker("service", "rm", SERVICE, check=False)
            for engine in (first, second):
                wait_for("the service's containers to go", lambda e=engine: task_container(e) == "", timeout=60)


def task_container(engine: Engine) -> str:
    return engine.docker("ps", "-q", "-f", f"label=com.docker.swarm.service.name={SERVICE}").stdout.strip()


def task_reads(engine: Engine, path: str) -> str:
    """What the service's running task on this engine reads at `path` ("" while none runs there)."""
    container = task_container(engine)
    if not container or "\n" in container:
        return ""
    result = engine.docker("exec", container, "cat", path, check=False)
    return result.stdout if result.returncode == 0 else ""
