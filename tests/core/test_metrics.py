"""/metrics and --log-format json through a real daemon, after real operations, as an operator reads them."""

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.daemon_harness import CONVOY, REPO, UnixHTTPConnection, cli_json

pytestmark = pytest.mark.needs_root

DATA_BYTES = 3 * 1024 * 1024 + 12345  # not a whole number of blocks


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def scrape_control(daemon) -> str:
    connection = UnixHTTPConnection(daemon.socket, timeout=30)
    connection.request("GET", "/metrics")
    response = connection.getresponse()
    assert response.status == 200 and response.getheader("Content-Type").startswith("text/plain")
    return response.read().decode()


def samples(text: str) -> dict:
    """{(sample name, sorted label items): value} of a scrape, read by prometheus_client's own parser."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scraped: dict, name: str, **labels) -> float:
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)




def test_metrics_and_json_logs_after_real_operations(make_daemon, tmp_path):
    port = free_port()
    daemon = make_daemon("--metrics-addr", f"127.0.0.1:{port}", "--log-format", "json")
    store = f"vfs://{tmp_path / 'store'}"

    # a container's life: Docker creates and mounts the volume, the container writes into it
    daemon.docker_ok("Create", {"Name": "web"})
    mountpoint = daemon.docker_ok("Mount", {"Name": "web", "ID": "container-1"})["Mountpoint"]
    data = os.urandom(DATA_BYTES)
    with open(os.path.join(mountpoint, "data.bin"), "wb") as out:
        out.write(data)
    snapshot = daemon.cli("snapshot", "create", "web", check=True).stdout.strip()
    url = daemon.cli("backup", "create", snapshot, "--dest", store, check=True).stdout.strip()
    # a second volume holding the same data: its backup reads it all and uploads none of it (dedup)
    daemon.docker_ok("Create", {"Name": "copy"})
    copy_mountpoint = daemon.docker_ok("Mount", {"Name": "copy", "ID": "container-3"})["Mountpoint"]
    with open(os.path.join(copy_mountpoint, "same.bin"), "wb") as out:
        out.write(data)
    daemon.docker_ok("Unmount", {"Name": "copy", "ID": "container-3"})
    copy_snapshot = daemon.cli("snapshot", "create", "copy", check=True).stdout.strip()
    copy_url = daemon.cli("backup", "create", copy_snapshot, "--dest", store, check=True).stdout.strip()
    daemon.cli("create", "restored", "--backup", url, check=True)
    # and calls that fail: a volume nobody created, through Docker and through the CLI
    status, reply = daemon.docker("Mount", {"Name": "missing", "ID": "container-2"})
    assert status == 500 and "missing does not exist" in reply["Err"]
    assert daemon.cli("inspect", "missing").returncode == 3

    stats = cli_json(daemon, "backup", "inspect", url)["stats"]
    copy_stats = cli_json(daemon, "backup", "inspect", copy_url)["stats"]
    assert copy_stats["read_bytes"] == DATA_BYTES and copy_stats["stored_bytes"] == 0
    over_socket = scrape_control(daemon)
    over_tcp = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    for text in (over_socket, over_tcp):
        scraped = samples(text)
        ops = "convoy_operations_total"
        assert value(scraped, ops, interface="docker", operation="Create", result="ok") == 2
        assert value(scraped, ops, interface="docker", operation="Mount", result="ok") == 2
        assert value(scraped, ops, interface="docker", operation="Mount", result="not_found") == 1
        assert value(scraped, ops, interface="control", operation="GET /v1/volumes/{name}", result="not_found") == 1
        assert value(scraped, ops, interface="control", operation="POST /v1/snapshots", result="ok") == 2
        assert value(scraped, ops, interface="control", operation="POST /v1/backups", result="ok") == 2
        durations = "convoy_operation_duration_seconds_count"
        assert value(scraped, durations, interface="docker", operation="Mount") == 3  # the failed one too
        assert value(scraped, "convoy_operation_duration_seconds_sum", interface="docker", operation="Mount") > 0

        assert value(scraped, "convoy_jobs_total", kind="backup", result="done") == 2
        assert value(scraped, "convoy_jobs_total", kind="restore", result="done") == 1
        assert value(scraped, "convoy_job_duration_seconds_count", kind="backup") == 2
        assert value(scraped, "convoy_jobs_running", kind="backup") == 0
        # what `backup inspect` says the backups read and stored (the copy's blocks were there already);
        # the restore wrote the file back
        assert value(scraped, "convoy_backup_bytes_total") == stats["read_bytes"] + copy_stats["read_bytes"] == 2 * DATA_BYTES
        assert value(scraped, "convoy_backup_uploaded_bytes_total") == stats["stored_bytes"] > 0
        assert value(scraped, "convoy_restore_bytes_total") == DATA_BYTES

        assert value(scraped, "convoy_volumes", driver="vfs") == 3
        assert value(scraped, "convoy_volumes_mounted", driver="vfs") == 1  # web; the restore's mount is released
        assert value(scraped, "convoy_mount_references", driver="vfs") == 1
        assert ("convoy_volumes", (("driver", "image"),)) in scraped  # an enabled back-end without volumes: 0
        assert value(scraped, "process_resident_memory_bytes") > 0

    # the TCP address serves the metrics alone, never the control API
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/volumes", timeout=30)
    assert refused.value.code == 404

    # the state gauges follow the catalog: Docker unmounts and removes, the next scrape shows it
    daemon.docker_ok("Unmount", {"Name": "web", "ID": "container-1"})
    scraped = samples(scrape_control(daemon))
    assert value(scraped, "convoy_volumes_mounted", driver="vfs") == 0
    assert value(scraped, "convoy_mount_references", driver="vfs") == 0

    daemon.stop()
    lines = [json.loads(line) for line in daemon.log_text().splitlines() if line.strip()]  # every line is JSON
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)

    docker_calls = [line for line in lines if line["message"].startswith("Docker ")]
    ids = [line["request_id"] for line in docker_calls]
    assert len(ids) == len(set(ids)) >= 4, "each Docker call has its own request id"
    created = next(line for line in docker_calls if line["message"].startswith("Docker Create web"))
    assert created["volume"] == "web" and created["request_id"] in created["message"]
    # the service's own line for that create carries the same request
    service_line = next(line for line in lines if line["message"].startswith("created volume web"))
    assert service_line["request_id"] == created["request_id"] and service_line["volume"] == "web"
    failed = next(line for line in docker_calls if line["message"].startswith("Docker Mount missing"))
    assert failed["volume"] == "missing" and "not_found" in failed["message"] and failed["request_id"]

    # a job's lines carry its id, the volume, and the request that started it
    started = [line for line in lines if " started: " in line["message"] and line["message"].startswith("job ")]
    volumes_of = {kind: sorted(line["volume"] for line in started if line["message"].split(": ", 1)[1].startswith(kind))
                  for kind in ("backup", "restore")}  # fmt: skip
    assert volumes_of == {"backup": ["copy", "web"], "restore": ["restored"]}
    for line in started:
        job = line["message"].split(" ")[1]
        assert line["job_id"] == job and line["request_id"]
        finished = [other for other in lines if other.get("job_id") == job and " done: " in other["message"]]
        assert finished and finished[0]["volume"] == line["volume"]


def test_text_logs_stay_the_default(daemon):
    daemon.docker_ok("Create", {"Name": "plain"})
    daemon.stop()
    line = next(line for line in daemon.log_text().splitlines() if "Docker Create plain" in line)
    assert not line.startswith("{") and " INFO app.volumedriver.api: Docker Create plain: " in line
    assert "request=" in line


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--metrics-addr", "9100"], {}, "metrics address '9100' (METRICS_ADDR or --metrics-addr) is not valid"),
        ([], {"METRICS_ADDR": "127.0.0.1:99999"}, "is not valid: give HOST:PORT, e.g. 127.0.0.1:9100"),
        (["--metrics-addr", "no-such-host.invalid:9100"], {}, "cannot resolve no-such-host.invalid"),
        (["--log-format", "xml"], {}, "'xml' is not a log format: use text (the default) or json"),
        ([], {"LOG_FORMAT": "yaml"}, "LOG_FORMAT or --log-format 'yaml' is not a log format"),
    ],
)
def test_bad_metrics_address_or_log_format_stops_the_start(make_daemon, args, env, expected):
    daemon = make_daemon(*args, env=env, start=False)
    daemon.start(wait=False)
    assert daemon.process.wait(60) != 0
    assert expected in daemon.log_text()
    assert not daemon.socket.exists() and not daemon.plugin_socket.exists()


def test_a_taken_metrics_port_stops_the_start(make_daemon):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        daemon = make_daemon("--metrics-addr", f"127.0.0.1:{port}", "--log-format", "json", start=False)
        daemon.start(wait=False)
        assert daemon.process.wait(60) != 0
    lines = [json.loads(line) for line in daemon.log_text().splitlines()]  # the error too is one JSON line
    assert lines[-1]["level"] == "error"
    assert f"--metrics-addr 127.0.0.1:{port}: cannot listen there (Address already in use)" in lines[-1]["message"]
    assert "choose another port" in lines[-1]["message"]
    assert not daemon.socket.exists() and not daemon.plugin_socket.exists()


def test_metrics_address_forms():
    from app.settings import load_settings

    assert load_settings(metrics_addr="[::1]:9100", env={}).metrics_addr == ("::1", 9100)
    every = "0.0.0.0"  # noqa: S104 - the setting an operator writes to serve every interface
    assert load_settings(env={"METRICS_ADDR": f"{every}:9100"}).metrics_addr == (every, 9100)
    assert load_settings(metrics_addr="127.0.0.1:9200", env={"METRICS_ADDR": f"{every}:9100"}).metrics_addr == ("127.0.0.1", 9200)
    assert load_settings(env={"METRICS_ADDR": ""}).metrics_addr is None  # the plugin's empty default
    assert load_settings(env={"LOG_FORMAT": "JSON"}).log_format == "json"


def test_json_lines_carry_the_context_and_the_traceback():
    import logging

    from app import logs

    formatter, context = logs.JsonFormatter(), logs.ContextFilter()
    with logs.bound(volume="web", job_id="0a1b2c", request_id=None):
        try:
            raise ValueError("boom")
        except ValueError:
            record = logging.LogRecord("app.x", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info())
        context.filter(record)
    text = formatter.format(record)
    assert "\n" not in text  # the traceback too stays on the one line
    line = json.loads(text)
    assert line["message"] == "failed here" and line["level"] == "error" and line["logger"] == "app.x"
    assert line["volume"] == "web" and line["job_id"] == "0a1b2c" and "request_id" not in line
    assert "ValueError: boom" in line["exception"]
    assert logs.volume.get() is None  # the context ends with its block


def test_the_cli_never_imports_prometheus_client(tmp_path):
    """The CLI starts fast: prometheus_client is the daemon's alone (on the quick path and on typer's)."""
    for command, module in ((["list"], "app.cli.quick"), (["snapshot", "inspect", "s1"], "app.cli.main")):
        result = subprocess.run(
            [*CONVOY[:1], "-X", "importtime", *CONVOY[1:], "--socket", str(tmp_path / "none.sock"), *command],
            cwd=REPO, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 5  # no daemon there
        assert module in result.stderr and "prometheus_client" not in result.stderr


def test_schedule_success_feeds_its_gauge():
    """The schedule runner's call point: one series per schedule, gone with the schedule."""
    from app import metrics

    metrics.schedule_succeeded("nightly", 1_700_000_000.5)
    metrics.schedule_succeeded("hourly", 1_700_000_100.0)
    metrics.schedule_succeeded("nightly", 1_700_086_400.0)
    scraped = samples(metrics.exposition().decode())
    name = "convoy_schedule_last_success_timestamp_seconds"
    assert value(scraped, name, schedule="nightly") == 1_700_086_400.0
    assert value(scraped, name, schedule="hourly") == 1_700_000_100.0
    metrics.schedule_removed("hourly")
    metrics.schedule_removed("never-ran")  # harmless
    assert (name, (("schedule", "hourly"),)) not in samples(metrics.exposition().decode())


def test_jobs_running_counted_by_kind_at_scrape_time():
    from app import metrics

    metrics.watch(None, ["vfs"], lambda: ["backup", "backup", "verify"])
    try:
        scraped = samples(metrics.exposition().decode())
    finally:
        metrics.watch(None, [], lambda: [])
    assert value(scraped, "convoy_jobs_running", kind="backup") == 2
    assert value(scraped, "convoy_jobs_running", kind="verify") == 1
    assert value(scraped, "convoy_jobs_running", kind="restore") == 0
    assert value(scraped, "convoy_volumes", driver="vfs") == 0
