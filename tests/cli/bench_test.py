"""Smoke tests of `shmbus bench`: a few thousand messages, checking what the
run reports (counts, JSON, the .hgrm files), never how fast it was: they must
pass on a loaded 2-core machine and under sanitizers.

meson runs this with SHMBUS_TOOL and SHMBUSD set (tests/meson.build). Each test
gets a private SHMBUS_SHM_ROOT under /dev/shm, removed afterwards.

By hand: SHMBUS_TOOL=build/tools/shmbus SHMBUSD=build/daemon/shmbusd \
         python3 -m pytest -q tests/cli/bench_test.py
"""

import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

TOOL = os.environ.get("SHMBUS_TOOL", "build/tools/shmbus")
DAEMON = os.environ.get("SHMBUSD", "build/daemon/shmbusd")
TIMEOUT = 300
KEYS = ["min", "p50", "p90", "p99", "p99_9", "p99_99", "max"]


@pytest.fixture
def env():
    root = tempfile.mkdtemp(prefix="shmbus-bench-test-", dir="/dev/shm")
    e = dict(os.environ)
    e.pop("SHMBUS_BUS", None)
    e.pop("SHMBUS_SOCKET", None)
    e["SHMBUS_SHM_ROOT"] = root
    e["XDG_RUNTIME_DIR"] = root  # no daemon of the machine's buses
    yield e
    shutil.rmtree(root, ignore_errors=True)


def bench(env, *args, expect=0):
    p = subprocess.run([TOOL, "bench", *args], env=env, capture_output=True, timeout=TIMEOUT)
    assert p.returncode == expect, (
        f"shmbus bench {' '.join(args)}: exit {p.returncode}\n"
        f"stdout: {p.stdout!r}\nstderr: {p.stderr!r}")
    return p.stdout.decode(), p.stderr.decode()


def check_result(r, count):
    assert r["received"] == count and r["sent"] == count and r["lost"] == 0, r
    lat = r["latency_ns"]
    assert lat["count"] == count
    values = [lat[k] for k in KEYS]
    assert values == sorted(values) and values[0] > 0, lat
    assert r["seconds"] > 0 and r["msgs_per_s"] > 0


def parse_hgrm(path):
    """Checks HdrHistogram's percentile-distribution layout; returns
    (rows, total count from the footer)."""
    lines = open(path).read().split("\n")
    assert lines[0].split() == ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
    assert lines[1] == ""
    rows, footer = [], []
    for line in lines[2:]:
        if line.startswith("#["):
            footer.append(line)
        elif line:
            assert not footer, "a row after the footer"
            rows.append(line.split())
    assert len(footer) == 3 and footer[0].startswith("#[Mean    =")
    assert footer[1].startswith("#[Max     =") and "Total count" in footer[1]
    total = int(footer[1].split("=")[-1].strip(" ]"))
    values = [float(r[0]) for r in rows]
    pcts = [float(r[1]) for r in rows]
    counts = [int(r[2]) for r in rows]
    assert values == sorted(values) and pcts == sorted(pcts) and counts == sorted(counts)
    for r in rows[:-1]:
        assert len(r) == 4 and abs(float(r[3]) - 1 / (1 - float(r[1]))) < 0.01 * float(r[3])
    assert len(rows[-1]) == 3 and pcts[-1] == 1.0 and counts[-1] == total
    return rows, total


def test_round_trip_json_and_hgrm(env):
    prefix = os.path.join(env["SHMBUS_SHM_ROOT"], "out")
    text, _ = bench(env, "--quick", "--json", "--sizes", "32,256", "--hgrm", prefix)
    j = json.loads(text)
    assert j["mode"] == "rtt" and j["daemon_socket"] is None and j["cpus"] == [0, 1]
    assert [r["payload"] for r in j["results"]] == [32, 256]
    for r in j["results"]:
        check_result(r, 2000)
        rows, total = parse_hgrm(r["hgrm"])
        assert total == 2000 and len(rows) > 10
    # Topics live in a private root, removed at the end: nothing left in ours.
    assert not os.path.exists(os.path.join(env["SHMBUS_SHM_ROOT"], "default"))


def test_one_way_at_a_rate(env):
    text, _ = bench(env, "--quick", "--json", "--mode", "one-way", "--rate", "20000",
                    "--sizes", "64")
    j = json.loads(text)
    assert j["mode"] == "one-way" and j["rate"] == 20000
    check_result(j["results"][0], 2000)


@pytest.mark.parametrize("wait", ["yield", "futex"])
def test_wait_strategies_and_table(env, wait):
    text, _ = bench(env, "--quick", "--wait", wait, "--sizes", "16")
    lines = text.strip().split("\n")
    assert f"wait {wait}" in lines[0] and "private bus root" in lines[0]
    assert lines[2].split() == ["payload", "count", "min", "p50", "p90", "p99", "p99.9",
                                "p99.99", "max", "rt/s", "lost"]
    row = lines[3].split()
    assert row[0] == "16" and row[1] == "2000" and row[-1] == "0"


def test_duration_overwrite_one_way(env):
    text, _ = bench(env, "--json", "--mode", "one-way", "--duration", "200ms", "--warmup", "100",
                    "--policy", "overwrite", "--sizes", "128")
    r = json.loads(text)["results"][0]
    # On an overwrite topic a slow consumer may lose messages; each is counted.
    assert r["sent"] > 0 and r["received"] + r["lost"] >= r["sent"] - 1 and r["received"] > 0


def test_usage_errors(env):
    _, err = bench(env, "--sizes", "8", expect=2)
    assert "sizes" in err
    _, err = bench(env, "--messages", "10", "--duration", "1s", expect=2)
    assert "excludes" in err


def test_through_the_daemon(env):
    sock = os.path.join(env["SHMBUS_SHM_ROOT"], "bench.sock")
    d = subprocess.Popen([DAEMON, "--bus", "benchbus", "--socket", sock, "--foreground"],
                         env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(sock):
            assert d.poll() is None, d.stderr.read().decode()
            assert time.monotonic() < deadline, "shmbusd did not create its socket"
            time.sleep(0.05)
        e = dict(env, SHMBUS_SOCKET=sock)
        text, _ = bench(e, "--bus", "benchbus", "--quick", "--json", "--sizes", "64")
        j = json.loads(text)
        assert j["daemon_socket"] == sock and j["bus"] == "benchbus"
        check_result(j["results"][0], 2000)
        # The run deleted its topics through the daemon.
        left = [f for f in os.listdir(os.path.join(env["SHMBUS_SHM_ROOT"], "benchbus"))
                if f.startswith("bench.")]
        assert left == []
    finally:
        d.terminate()
        d.wait(timeout=60)
