"""Tests of the `shmbus` command-line tool, run as a separate process.

meson runs this with SHMBUS_TOOL and SHMBUSD set to the built tool and
daemon (tests/meson.build). Each test runs twice: without a daemon, and with
a real shmbusd process serving the bus. Each run gets a private
SHMBUS_SHM_ROOT under /dev/shm and XDG_RUNTIME_DIR, removed afterwards, so
tests never see each other's topics or the machine's real buses.

By hand: SHMBUS_TOOL=build/tools/shmbus SHMBUSD=build/daemon/shmbusd \
  /usr/bin/python3 -m pytest -q tests/cli/cli_test.py
"""

import base64
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import pytest

TOOL = os.environ.get("SHMBUS_TOOL", "build/tools/shmbus")
SHMBUSD = os.environ.get("SHMBUSD", "build/daemon/shmbusd")
# Generous: the tests must pass on a loaded 2-core machine under sanitizers.
TIMEOUT = 120


@pytest.fixture(params=["embedded", "daemon"])
def env(request):
    """The tool's environment. "daemon": a real shmbusd serves the bus
    `default` (its socket at the default path under a private
    XDG_RUNTIME_DIR), so topic create/delete, publish and tail of that bus
    go through it; other buses, and every bus in "embedded", have no daemon."""
    root = tempfile.mkdtemp(prefix="shmbus-cli-test-", dir="/dev/shm")
    e = dict(os.environ)
    e.pop("SHMBUS_BUS", None)
    e.pop("SHMBUS_SOCKET", None)
    e["SHMBUS_SHM_ROOT"] = os.path.join(root, "shm")
    e["XDG_RUNTIME_DIR"] = os.path.join(root, "run")
    os.mkdir(e["XDG_RUNTIME_DIR"], 0o700)
    daemon = None
    if request.param == "daemon":
        e["SHMBUSD_LOG"] = os.path.join(root, "shmbusd.log")
        log = open(e["SHMBUSD_LOG"], "w")
        daemon = subprocess.Popen([SHMBUSD, "--foreground", "--data-dir",
                                   os.path.join(root, "data")], env=e, stdout=log, stderr=log)
        socket = os.path.join(e["XDG_RUNTIME_DIR"], "shmbus", "default.sock")
        wait_for("shmbusd's socket", lambda: os.path.exists(socket) or daemon.poll() is not None)
        assert daemon.poll() is None, open(log.name).read()
    yield e
    if daemon is not None:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=TIMEOUT) == 0, open(log.name).read()
        log.close()
    shutil.rmtree(root, ignore_errors=True)


def run(env, *args, input=None, expect=0):
    """Runs the tool; checks the exit code; returns the CompletedProcess."""
    p = subprocess.run([TOOL, *args], env=env, input=input, capture_output=True,
                       timeout=TIMEOUT)
    assert p.returncode == expect, (
        f"shmbus {' '.join(args)}: exit {p.returncode}, expected {expect}\n"
        f"stdout: {p.stdout!r}\nstderr: {p.stderr!r}")
    if expect != 0:
        # One line on stderr, starting with "shmbus: ".
        err = p.stderr.decode()
        assert err.startswith("shmbus: ") and err.count("\n") == 1, err
    return p


def out(env, *args, input=None):
    return run(env, *args, input=input).stdout.decode()


def describe(env, topic):
    return json.loads(out(env, "topic", "describe", topic, "--json"))


def wait_for(what, predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def iso(ns, offset_hours=0):
    """ns since the epoch as ISO-8601 with 9 fraction digits, in a given zone."""
    tz = datetime.timezone(datetime.timedelta(hours=offset_hours))
    t = datetime.datetime.fromtimestamp(ns // 10**9, tz)
    zone = "Z" if offset_hours == 0 else t.strftime("%z")[:3] + ":" + t.strftime("%z")[3:]
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % 10**9:09d}" + zone


class Background:
    """A `shmbus tail -f` (or other) process, stopped with SIGINT at the end."""

    def __init__(self, env, *args):
        self.p = subprocess.Popen([TOOL, *args], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        # Drained while it runs: a full pipe would stop it inside write(), and a
        # gating tail stopped there holds producers back.
        self._out, self._err = [], []
        self._readers = [threading.Thread(target=self._drain, args=(pipe, into), daemon=True)
                         for pipe, into in ((self.p.stdout, self._out), (self.p.stderr, self._err))]
        for t in self._readers:
            t.start()

    @staticmethod
    def _drain(pipe, into):
        for chunk in iter(lambda: pipe.read1(65536), b""):
            into.append(chunk)

    def finish(self):
        """Waits for the process to exit: (returncode, stdout, stderr)."""
        self.p.wait(timeout=TIMEOUT)
        for t in self._readers:
            t.join(timeout=TIMEOUT)
        return self.p.returncode, b"".join(self._out).decode(), b"".join(self._err).decode()

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGCONT)
            self.p.send_signal(signal.SIGINT)
        return self.finish()


def topic_files(bus_dir):
    """The files of a bus directory but the daemon's registry."""
    return sorted(f for f in os.listdir(bus_dir) if f != "registry")


def consumers(env, topic, partition=0):
    return describe(env, topic)["partition_state"][partition]["consumers"]


# --- help and usage --------------------------------------------------------


def test_help_documents_exit_codes_and_the_daemon(env):
    text = out(env, "--help")
    for line in ["0  ok", "1  the operation failed", "2  usage error", "3  not found"]:
        assert line in text
    assert "daemon" in text
    for sub in [["topic", "create"], ["topic", "list"], ["topic", "describe"],
                ["topic", "delete"], ["publish"], ["tail"], ["stat"], ["doctor"]]:
        assert "Usage: shmbus " + " ".join(sub) in out(env, *sub, "--help")


@pytest.mark.parametrize("args", [
    [],
    ["bogus"],
    ["topic"],
    ["topic", "bogus"],
    ["topic", "create"],
    ["topic", "create", "t", "--partitions", "0"],
    ["topic", "create", "t", "--segment-bytes", "1000"],
    ["topic", "create", "t", "--segments", "3"],
    ["topic", "create", "t", "--policy", "drop"],
    ["topic", "create", "t", "--alignment", "16"],
    ["topic", "create", "t", "--mode", "0666"],
    ["topic", "create", "t", "--mode", "rw"],
    ["topic", "create", "bad/name"],
    ["--bus", "bad/bus", "topic", "list"],
    ["publish"],
    ["publish", "t", "x", "--header", "novalue"],
    ["publish", "t", "x", "--timeout", "soon"],
    ["tail", "t", "--format", "xml"],
    ["tail", "t", "--from", "yesterday"],
    ["tail", "t", "--from", "2026-13-01"],
    ["tail", "t", "--unknown"],
    ["stat", "--interval", "0s"],
    ["doctor", "extra"],
])
def test_bad_arguments_exit_2(env, args):
    p = run(env, *args, expect=2)
    assert "--help" in p.stderr.decode()


def test_partition_out_of_range_is_a_usage_error(env):
    run(env, "topic", "create", "t", "--partitions", "2", "--segment-bytes", "4096")
    err = run(env, "publish", "t", "x", "--partition", "2", expect=2).stderr.decode()
    assert "0..1" in err
    run(env, "tail", "t", "--partition", "5", expect=2)


# --- topics ----------------------------------------------------------------


def test_create_describe_list(env):
    text = out(env, "topic", "create", "orders", "--partitions", "2", "--segment-bytes", "64KiB",
               "--segments", "8", "--policy", "overwrite", "--alignment", "128",
               "--max-producers", "4", "--max-consumers", "8", "--exclusive", "--mode", "0600",
               "--hung-producer-timeout", "250")
    assert text.startswith("created topic orders")
    run(env, "topic", "create", "prices")  # all defaults

    d = describe(env, "orders")
    assert d["name"] == "orders"
    assert d["bus"] == "default"
    assert d["partitions"] == 2
    assert d["policy"] == "overwrite"
    assert d["segment_bytes"] == 65536
    assert d["segment_count"] == 8
    assert d["capacity"] == 8 * 65536
    assert d["frame_alignment"] == 128
    assert d["max_producers"] == 4
    assert d["max_consumers"] == 8
    assert d["exclusive_producer"] is True
    assert d["mode"] == "0600"
    assert (d["hung_producer_timeout_ms"], d["slow_consumer_timeout_ms"]) == (250, 0)
    assert [p["partition"] for p in d["partition_state"]] == [0, 1]
    for p in d["partition_state"]:
        assert p["tail"] == 0 and p["producers"] == [] and p["consumers"] == []
    root = os.path.join(env["SHMBUS_SHM_ROOT"], "default")
    for f in ["orders.0.log", "orders.0.cur", "orders.1.log", "orders.1.cur"]:
        assert os.stat(os.path.join(root, f)).st_mode & 0o777 == 0o600

    d = describe(env, "prices")
    assert (d["partitions"], d["policy"], d["segment_bytes"], d["segment_count"]) == \
        (1, "block", 1 << 20, 4)
    assert (d["frame_alignment"], d["exclusive_producer"], d["mode"]) == (64, False, "0640")
    assert (d["hung_producer_timeout_ms"], d["slow_consumer_timeout_ms"]) == (1000, 0)

    text = out(env, "topic", "describe", "orders")
    assert "policy         overwrite" in text
    assert "8 x 64.0 KiB = 512.0 KiB per partition (524288 bytes)" in text
    assert "partition 1    tail 0" in text
    assert "supervision    hung producer 250 ms, slow consumer never" in text
    # Eviction is for block topics only.
    bad = run(env, "topic", "create", "o2", "--policy", "overwrite", "--slow-consumer-timeout",
              "100", expect=1)
    assert b"slow_consumer_timeout_ms" in bad.stderr

    lines = out(env, "topic", "list").splitlines()
    assert lines[0].split() == ["TOPIC", "PARTITIONS", "POLICY", "CAPACITY/PART", "PRODUCERS",
                                "CONSUMERS"]
    assert [l.split()[:3] for l in lines[1:]] == [["orders", "2", "overwrite"],
                                                 ["prices", "1", "block"]]
    listed = json.loads(out(env, "topic", "list", "--json"))
    assert [(t["name"], t["partitions"]) for t in listed] == [("orders", 2), ("prices", 1)]


def test_create_with_placement_and_lock(env):
    if "SHMBUSD_LOG" in env:  # the daemon maps topics itself: --lock is refused, not dropped
        err = run(env, "topic", "create", "locked", "--lock", expect=1).stderr.decode()
        assert "lock_memory" in err
        run(env, "topic", "create", "placed", "--numa-node", "0", "--segment-bytes", "4096")
    else:
        run(env, "topic", "create", "placed", "--numa-node", "0", "--lock", "--segment-bytes",
            "4096")
    assert describe(env, "placed")["segment_bytes"] == 4096
    err = run(env, "topic", "create", "nowhere", "--numa-node", "4000",
              expect=1).stderr.decode()
    assert "NUMA node 4000" in err and "shmbus doctor" in err
    assert "nowhere" not in out(env, "topic", "list")  # all partitions or none


def test_create_twice_fails_and_says_what_to_do(env):
    run(env, "topic", "create", "t", "--segment-bytes", "4096")
    err = run(env, "topic", "create", "t", expect=1).stderr.decode()
    assert "already exists" in err and "topic delete t" in err


def test_bus_option_and_environment(env):
    run(env, "--bus", "other", "topic", "create", "t", "--segment-bytes", "4096")
    assert "no topics" in out(env, "topic", "list")
    assert json.loads(out(env, "topic", "list", "--bus", "other", "--json"))[0]["name"] == "t"
    e = dict(env, SHMBUS_BUS="other")
    assert describe(e, "t")["bus"] == "other"


def test_delete(env):
    run(env, "topic", "create", "t", "--partitions", "2", "--segment-bytes", "4096")
    assert out(env, "topic", "delete", "t") == "deleted topic t\n"
    assert topic_files(os.path.join(env["SHMBUS_SHM_ROOT"], "default")) == []
    assert "no topics" in out(env, "topic", "list")
    assert json.loads(out(env, "topic", "list", "--json")) == []
    err = run(env, "topic", "delete", "t", expect=3).stderr.decode()
    assert "'t' not found" in err


def test_delete_a_damaged_topic(env):
    run(env, "topic", "create", "t", "--partitions", "2", "--segment-bytes", "4096")
    bus = os.path.join(env["SHMBUS_SHM_ROOT"], "default")
    os.truncate(os.path.join(bus, "t.0.log"), 100)  # as if a process with write access broke it
    run(env, "topic", "describe", "t", expect=1)
    assert "unreadable" in out(env, "topic", "list")
    assert out(env, "topic", "delete", "t") == "deleted topic t\n"
    assert topic_files(bus) == []


def test_registered_topic_without_files_is_listed_and_deleted(env):
    """The daemon's registry (mapped read-only by the tool) names a topic whose
    files are gone: it is listed, as unreadable, and can be deleted."""
    if "SHMBUSD_LOG" not in env:
        pytest.skip("needs the daemon")
    run(env, "topic", "create", "t", "--segment-bytes", "4096")
    bus = os.path.join(env["SHMBUS_SHM_ROOT"], "default")
    for f in topic_files(bus):
        os.unlink(os.path.join(bus, f))
    assert "t " in out(env, "topic", "list") and "unreadable" in out(env, "topic", "list")
    assert out(env, "topic", "delete", "t") == "deleted topic t\n"
    assert "no topics" in out(env, "topic", "list")


@pytest.mark.parametrize("args", [
    ["topic", "describe", "nope"],
    ["topic", "describe", "nope", "--json"],
    ["topic", "delete", "nope"],
    ["publish", "nope", "x"],
    ["tail", "nope"],
    ["stat", "nope", "--once"],
])
def test_missing_topic_exit_3(env, args):
    err = run(env, *args, expect=3).stderr.decode()
    assert "topic 'nope' not found in bus 'default'" in err
    assert "topic list" in err


# --- publish and tail ------------------------------------------------------


def publish_sample(env):
    """Two messages from arguments with key and headers, three from stdin."""
    run(env, "topic", "create", "t", "--segment-bytes", "4096", "--segments", "4")
    run(env, "publish", "t", "hello", "wörld", "--key", "AAPL", "--header", "venue=XNAS",
        "-H", "side=buy")
    run(env, "publish", "t", input=b"plain\nctl\x01\"q\"\\\t\n\xff\xfe\n")
    return [json.loads(l) for l in out(env, "tail", "t", "--format", "json").splitlines()]


def test_tail_json(env):
    msgs = publish_sample(env)
    assert [m["position"] for m in msgs] == [0, 128, 256, 320, 384]
    now = time.time_ns()
    for m in msgs:
        assert m["partition"] == 0
        assert now - 600 * 10**9 < m["timestamp_ns"] <= now
        assert m["time"] == iso(m["timestamp_ns"])
    stamps = [m["timestamp_ns"] for m in msgs]
    assert stamps == sorted(stamps)
    strip = [{k: v for k, v in m.items() if k not in ("timestamp_ns", "time")} for m in msgs]
    assert strip == [
        {"position": 0, "partition": 0, "key": "AAPL",
         "headers": {"venue": "XNAS", "side": "buy"}, "payload": "hello"},
        {"position": 128, "partition": 0, "key": "AAPL",
         "headers": {"venue": "XNAS", "side": "buy"}, "payload": "wörld"},
        {"position": 256, "partition": 0, "key": None, "headers": {}, "payload": "plain"},
        {"position": 320, "partition": 0, "key": None, "headers": {},
         "payload": "ctl\x01\"q\"\\\t"},
        {"position": 384, "partition": 0, "key": None, "headers": {},
         "payload_base64": base64.b64encode(b"\xff\xfe").decode()},
    ]


def test_tail_text(env):
    msgs = publish_sample(env)
    t = [m["time"] for m in msgs]
    assert out(env, "tail", "t").splitlines() == [
        f'position=0 time={t[0]} key="AAPL" headers={{"venue"="XNAS", "side"="buy"}} '
        'payload="hello"',
        f'position=128 time={t[1]} key="AAPL" headers={{"venue"="XNAS", "side"="buy"}} '
        'payload="wörld"',
        f'position=256 time={t[2]} payload="plain"',
        f'position=320 time={t[3]} payload="ctl\\x01\\"q\\"\\\\\\t"',
        f'position=384 time={t[4]} payload="\\xff\\xfe"',
    ]


def test_tail_hex(env):
    msgs = publish_sample(env)
    t = [m["time"] for m in msgs]
    assert out(env, "tail", "t", "--format", "hex").splitlines() == [
        f'position=0 time={t[0]} key="AAPL" headers={{"venue"="XNAS", "side"="buy"}} length=5',
        "00000000  68 65 6c 6c 6f                                    |hello|",
        f'position=128 time={t[1]} key="AAPL" headers={{"venue"="XNAS", "side"="buy"}} length=6',
        "00000000  77 c3 b6 72 6c 64                                 |w..rld|",
        f"position=256 time={t[2]} length=5",
        "00000000  70 6c 61 69 6e                                    |plain|",
        f"position=320 time={t[3]} length=9",
        '00000000  63 74 6c 01 22 71 22 5c  09                       |ctl."q"\\.|',
        f"position=384 time={t[4]} length=2",
        "00000000  ff fe                                             |..|",
    ]


def test_tail_hex_of_a_long_payload(env):
    run(env, "topic", "create", "t", "--segment-bytes", "4096")
    run(env, "publish", "t", "0123456789abcdefXYZ")
    assert out(env, "tail", "t", "--format", "hex").splitlines()[1:] == [
        "00000000  30 31 32 33 34 35 36 37  38 39 61 62 63 64 65 66  |0123456789abcdef|",
        "00000010  58 59 5a                                          |XYZ|",
    ]


def test_publish_from_stdin_keeps_empty_lines_and_a_last_line_without_newline(env):
    run(env, "topic", "create", "t", "--segment-bytes", "4096")
    run(env, "publish", "t", "--key", "k", input=b"a\n\nb")
    msgs = [json.loads(l) for l in out(env, "tail", "t", "--format", "json").splitlines()]
    assert [(m["key"], m["payload"]) for m in msgs] == [("k", "a"), ("k", ""), ("k", "b")]


def test_tail_from_position(env):
    msgs = publish_sample(env)
    lines = out(env, "tail", "t", "--from", "256", "--format", "json").splitlines()
    assert [json.loads(l)["position"] for l in lines] == [256, 320, 384]
    assert out(env, "tail", "t", "--from", "448") == ""  # the tail: nothing yet
    lines = out(env, "tail", "t", "--from", "128", "--count", "2", "--format", "json").splitlines()
    assert [json.loads(l)["position"] for l in lines] == [128, 256]
    # Not a multiple of the alignment; past the tail; inside a frame.
    assert "alignment" in run(env, "tail", "t", "--from", "100", expect=1).stderr.decode()
    assert "outside the ring" in run(env, "tail", "t", "--from", "4096",
                                     expect=1).stderr.decode()
    err = run(env, "tail", "t", "--from", "64", expect=1).stderr.decode()
    assert "not a frame boundary: the frame at 0 spans it" in err
    assert len(msgs) == 5


def test_tail_from_time(env):
    run(env, "topic", "create", "t", "--segment-bytes", "4096")
    run(env, "publish", "t", "early1", "early2")
    time.sleep(0.01)
    run(env, "publish", "t", "late1", "late2")
    msgs = [json.loads(l) for l in out(env, "tail", "t", "--format", "json").splitlines()]
    assert [m["payload"] for m in msgs] == ["early1", "early2", "late1", "late2"]
    late = msgs[2]["timestamp_ns"]
    assert late > msgs[1]["timestamp_ns"]

    def payloads(*args):
        lines = out(env, "tail", "t", "--format", "json", *args).splitlines()
        return [json.loads(l)["payload"] for l in lines]

    # At or after the time: the message stamped exactly then is included.
    assert payloads("--from", iso(late)) == ["late1", "late2"]
    assert payloads("--from", iso(late, offset_hours=2)) == ["late1", "late2"]
    assert payloads("--from", iso(late - 1)) == ["late1", "late2"]
    assert payloads("--from", iso(late + 1)) == ["late2"]
    assert payloads("--from", iso(msgs[0]["timestamp_ns"])) == [m["payload"] for m in msgs]
    # Relative, with and without '='.
    assert payloads("--from=-1h") == [m["payload"] for m in msgs]
    assert payloads("--from", "-10m") == [m["payload"] for m in msgs]
    assert payloads("--from", "2100-01-01T00:00:00Z") == []
    assert payloads("--from", "2000-01-01") == [m["payload"] for m in msgs]


def test_tail_from_time_on_unstamped_messages_says_so(env):
    run(env, "topic", "create", "t", "--segment-bytes", "4096")
    run(env, "publish", "t", "--no-timestamp", "a", "b")
    msgs = [json.loads(l) for l in out(env, "tail", "t", "--format", "json").splitlines()]
    assert [(m["payload"], m["timestamp_ns"], m["time"]) for m in msgs] == [
        ("a", 0, None), ("b", 0, None)]
    r = run(env, "tail", "t", "--from", "-1h", expect=1)
    assert r.stdout == b""
    err = r.stderr.decode()
    assert "2 of the messages carry no timestamp" in err
    assert "timestamps = false" in err
    # Stamped messages after them are found; the unstamped ones are skipped.
    run(env, "publish", "t", "c")
    assert out(env, "tail", "t", "--from", "-1h", "--format", "json").count("\n") == 1


def test_typed_headers(env):
    run(env, "topic", "create", "t", "--segment-bytes", "4096")
    run(env, "publish", "t", "x", "-H", "venue=XNAS", "-H", "qty:int=-5", "-H", "px:double=1.25",
        "-H", "urgent:bool=true", "-H", "trace:bytes=0aff", "-H", "a:b=c", "-H", "n:string=1")
    [m] = [json.loads(l) for l in out(env, "tail", "t", "--format", "json").splitlines()]
    assert m["headers"] == {"venue": "XNAS", "qty": -5, "px": 1.25, "urgent": True,
                            "trace": {"base64": base64.b64encode(b"\x0a\xff").decode()},
                            "a:b": "c", "n": "1"}
    text = out(env, "tail", "t")
    assert ('headers={"venue"="XNAS", "qty"=-5, "px"=1.25, "urgent"=true, "trace"=0x0aff, '
            '"a:b"="c", "n"="1"}') in text


@pytest.mark.parametrize("header,why", [
    ("q:int=1.5", "not a 64-bit integer"),
    ("q:int=99999999999999999999", "not a 64-bit integer"),
    ("q:double=x", "not a number"),
    ("q:bool=yes", "not true or false"),
    ("q:bytes=abc", "two digits a byte"),
    ("q:bytes=zz", "not hex"),
    (":int=1", "the name is empty"),
    ("n" * 256 + "=v", "at most 255 bytes"),
])
def test_bad_typed_header_is_refused(env, header, why):
    run(env, "topic", "create", "t", "--segment-bytes", "4096")
    err = run(env, "publish", "t", "x", "-H", header, expect=2).stderr.decode()
    assert why in err, err


def test_tail_follow_until_count(env):
    run(env, "topic", "create", "t", "--segment-bytes", "4096")
    run(env, "publish", "t", "old")
    bg = Background(env, "tail", "--gating", "t", "--follow", "--count", "2", "--format", "json")
    wait_for("tail to attach", lambda: len(consumers(env, "t")) == 1)
    run(env, "publish", "t", "new1", "new2", "new3")
    rc, stdout, stderr = bg.finish()
    assert rc == 0, stderr
    assert [json.loads(l)["payload"] for l in stdout.splitlines()] == ["new1", "new2"]
    assert consumers(env, "t") == []  # the cursor slot was given back


def test_daemon_creates_supervises_and_deletes(env):
    """With a daemon, the tool's requests reach it: it creates and deletes the
    topic, and a killed tail's cursor slot is freed by it (no other reaper
    runs here: nothing publishes or opens a consumer after the kill)."""
    if "SHMBUSD_LOG" not in env:
        pytest.skip("needs the daemon")
    run(env, "topic", "create", "t", "--segment-bytes", "4096")
    bg = Background(env, "tail", "--gating", "t", "--follow")
    wait_for("tail to attach", lambda: len(consumers(env, "t")) == 1)
    bg.p.kill()
    bg.p.wait(timeout=TIMEOUT)
    wait_for("the daemon to free the dead tail's slot", lambda: consumers(env, "t") == [])
    run(env, "topic", "delete", "t")
    log = open(env["SHMBUSD_LOG"]).read()
    assert "topic t created by pid" in log, log
    assert "topic t deleted by pid" in log, log


def test_tail_follow_stops_cleanly_on_sigint(env):
    run(env, "topic", "create", "t", "--segment-bytes", "4096")
    bg = Background(env, "tail", "--gating", "t", "-f")
    wait_for("tail to attach", lambda: len(consumers(env, "t")) == 1)
    run(env, "publish", "t", "x", "--key", "k")
    wait_for("tail to read", lambda: consumers(env, "t")[0]["lag"] == 0)
    code, stdout, stderr = bg.stop()
    assert code == 0, stderr
    assert re.fullmatch(r'position=0 time=\S+ key="k" payload="x"\n', stdout)
    assert consumers(env, "t") == []


def test_publish_fails_when_full_for_the_timeout(env):
    run(env, "topic", "create", "t", "--segment-bytes", "4096", "--segments", "2")
    bg = Background(env, "tail", "--gating", "t", "-f")
    wait_for("tail to attach", lambda: len(consumers(env, "t")) == 1)
    bg.p.send_signal(signal.SIGSTOP)  # a consumer that reads nothing
    pid = bg.p.pid
    lines = "".join(f"{i}\n" for i in range(200)).encode()
    err = run(env, "publish", "t", "--timeout", "200ms", input=lines,
              expect=1).stderr.decode()
    assert "stayed full for 200ms" in err
    assert f"pid {pid}" in err and "128 message(s) were published" in err
    code, _, stderr = bg.stop()
    assert code == 0, stderr


def test_publish_too_large(env):
    run(env, "topic", "create", "t", "--segment-bytes", "4096")
    err = run(env, "publish", "t", "x" * 5000, expect=1).stderr.decode()
    assert "does not fit in one segment" in err and "--segment-bytes" in err


def test_tail_of_stdout_closed_early(env):
    run(env, "topic", "create", "t", "--segment-bytes", "4096", "--segments", "16")
    run(env, "publish", "t", input=b"m\n" * 500)
    p = subprocess.run(f"'{TOOL}' tail t | head -n 1", shell=True, env=env, capture_output=True,
                       timeout=TIMEOUT)
    assert p.stdout.decode().startswith("position=0 ")
    assert p.stderr == b""
    assert consumers(env, "t") == []


# --- stat and doctor -------------------------------------------------------


def test_stat_once(env):
    run(env, "topic", "create", "t", "--segment-bytes", "4096", "--segments", "4")
    run(env, "topic", "create", "u", "--partitions", "2", "--segment-bytes", "4096")
    run(env, "publish", "t", "a" * 100, "b" * 100)  # 2 frames of 128 bytes
    bg = Background(env, "tail", "--gating", "t", "-f")  # joins at the tail: 256
    wait_for("tail to attach", lambda: len(consumers(env, "t")) == 1)
    run(env, "publish", "t", "c" * 100)
    wait_for("tail to read", lambda: consumers(env, "t")[0]["position"] == 384)
    bg.p.send_signal(signal.SIGSTOP)
    run(env, "publish", "t", "d" * 100)  # lag: 128 bytes

    lines = out(env, "stat", "--once", "--interval", "100ms").splitlines()
    assert lines[0].startswith("shmbus stat  bus default")
    assert lines[1].split() == ["TOPIC", "PART", "POLICY", "CAPACITY", "TAIL", "MSGS/S",
                                "BYTES/S", "FILL", "PRODUCER", "PIDS"]
    #                  topic part policy capacity     tail msgs/s bytes/s   fill  producers
    assert lines[2].split() == ["t", "0", "block", "16.0", "KiB", "512", "0", "0", "B", "0.8%",
                                "-"]
    assert lines[3].split() == ["consumer", "pid", str(bg.p.pid), "position", "384", "lag", "128",
                                "B"]
    assert [l.split()[:2] for l in lines[4:]] == [["u", "0"], ["u", "1"]]

    only = json.loads(out(env, "stat", "t", "--once", "--json", "-i", "50ms"))
    assert only["bus"] == "default" and only["missing"] == []
    [part] = only["partitions"]
    assert (part["topic"], part["partition"], part["tail"], part["capacity"]) == \
        ("t", 0, 512, 16384)
    assert part["msgs_per_s"] == 0 and part["bytes_per_s"] == 0 and part["fill"] == pytest.approx(128 / 16384)
    assert part["producer_pids"] == []
    assert part["consumers"] == [{"pid": bg.p.pid, "alive": True, "name": None, "position": 384,
                                  "lag": 128}]
    code, stdout, stderr = bg.stop()
    assert code == 0, stderr
    assert [l.split("payload=")[1] for l in stdout.splitlines()] == \
        ['"' + "c" * 100 + '"', '"' + "d" * 100 + '"']


def test_stat_counts_messages_published_during_the_interval(env):
    """msgs/s comes from walking the frames between two tails: with frames of
    one size (100 B payload -> 128 B frame) it is exactly bytes/s / 128."""
    run(env, "topic", "create", "t", "--segment-bytes", "4096", "--segments", "64",
        "--policy", "overwrite")
    # One publisher for the whole test, fed a line at a time (starting a tool
    # per message can take longer than the interval under sanitizers).
    publisher = subprocess.Popen([TOOL, "publish", "t"], env=env, stdin=subprocess.PIPE,
                                 stderr=subprocess.PIPE)

    def publish():
        publisher.stdin.write(b"m" * 100 + b"\n")
        publisher.stdin.flush()

    publish()
    wait_for("the publisher", lambda: describe(env, "t")["partition_state"][0]["tail"] > 0)
    stat = subprocess.Popen([TOOL, "stat", "t", "--once", "--json", "-i", "1s"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    published = 1
    while stat.poll() is None:
        publish()
        published += 1
        time.sleep(0.02)
    publisher.stdin.close()
    assert publisher.wait(timeout=TIMEOUT) == 0, publisher.stderr.read()
    stdout, stderr = stat.communicate(timeout=TIMEOUT)
    assert stat.returncode == 0, stderr
    [part] = json.loads(stdout)["partitions"]
    assert part["bytes_per_s"] > 0, (published, part)
    assert part["msgs_per_s"] == pytest.approx(part["bytes_per_s"] / 128), part


def test_stat_repeats_plain_tables_when_not_a_tty(env, tmp_path):
    run(env, "topic", "create", "t", "--segment-bytes", "4096")
    log = tmp_path / "stat.out"
    with open(log, "wb") as f:
        p = subprocess.Popen([TOOL, "stat", "--interval", "50ms"], env=env, stdout=f)
    try:
        wait_for("three tables", lambda: log.read_text().count("shmbus stat  bus default") >= 3)
    finally:
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=TIMEOUT) == 0
    text = log.read_text()
    assert "\x1b" not in text
    assert "\n\nshmbus stat  bus default" in text  # tables one blank line apart


def test_doctor(env):
    text = out(env, "doctor")
    for check in ["cpus", "cpu governor", "isolated cpus", "huge pages", "transparent huge pages",
                  "swap", "memlock limit", "/dev/shm", "io_uring", "numa", "clocksource"]:
        assert re.search(r"^(ok|info|warn) +" + re.escape(check) + " ", text, re.M), check
    assert re.search(r"^\d+ warning\(s\)$", text, re.M)
    d = json.loads(out(env, "doctor", "--json"))
    assert len(d["checks"]) == 11
    for c in d["checks"]:
        assert c["verdict"] in ("ok", "info", "warn") and c["finding"]
        assert c["verdict"] == "ok" or c["advice"], c
    assert d["warnings"] == sum(c["verdict"] == "warn" for c in d["checks"])


def test_paused_tail_does_not_stop_producers(env):
    """`tail -f` is an observer by default: paused with Ctrl-Z (SIGSTOP) it
    holds no producer of a block topic back, and says what it missed when it
    goes on. `--gating` reads as a consumer that does hold them back."""
    run(env, "topic", "create", "t", "--segment-bytes", "4096", "--segments", "2")
    lines = b"".join(b"m%05d\n" % i for i in range(1000))  # 64 B frames: ~8 rings
    observer = Background(env, "tail", "t", "-f", "--from", "beginning")
    time.sleep(0.3)
    assert consumers(env, "t") == []
    observer.p.send_signal(signal.SIGSTOP)
    run(env, "publish", "t", input=lines)  # Full forever behind a gating cursor
    observer.p.send_signal(signal.SIGCONT)
    time.sleep(0.5)  # it reads on to the end
    rc, stdout, stderr = observer.stop()
    assert "were overwritten before tail read them" in stderr, stderr
    assert 'payload="m00999"' in stdout, stdout[-500:]

    gating = Background(env, "tail", "t", "-f", "--gating")
    wait_for("the gating tail", lambda: len(consumers(env, "t")) == 1)
    gating.p.send_signal(signal.SIGSTOP)
    publisher = subprocess.Popen([TOOL, "publish", "t"], env=env, stdin=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
    publisher.stdin.write(lines)
    publisher.stdin.close()
    time.sleep(1)
    assert publisher.poll() is None, "a paused gating tail holds a block topic's producers back"
    gating.p.send_signal(signal.SIGCONT)
    assert publisher.wait(timeout=TIMEOUT) == 0, publisher.stderr.read()
    gating.stop()


def test_tail_by_name_resumes_and_cursor_delete_removes_it(env):
    """`tail --name` reads through a durable named cursor: the next tail of
    that name goes on where the last one stopped, the cursor stays (parked,
    holding a block topic's producers back) until `cursor delete`."""
    run(env, "topic", "create", "t", "--segment-bytes", "4096", "--segments", "2")
    run(env, "publish", "t", "a", "b", "c")
    payloads = lambda stdout: [l.split("payload=")[1] for l in stdout.splitlines()]
    assert payloads(out(env, "tail", "t", "--name", "audit", "-n", "2")) == ['"a"', '"b"']
    [cursor] = consumers(env, "t")
    assert (cursor["name"], cursor["alive"], cursor["pid"]) == ("audit", False, 0)
    assert "cursor 'audit' parked (no holder; holds producers back" in \
        out(env, "topic", "describe", "t")
    run(env, "publish", "t", "d")
    # --from is for a new name only: this one resumes.
    assert payloads(out(env, "tail", "t", "--name", "audit", "--from", "end")) == ['"c"', '"d"']
    assert out(env, "tail", "t", "--name", "audit") == ""
    # Parked, it gates: a ring of publishes is Full behind it.
    many = b"".join(b"y" * 1000 + b"\n" for _ in range(20))
    full = run(env, "publish", "t", "--timeout", "0", input=many, expect=1)
    assert b"cursor 'audit'" in full.stderr, full.stderr
    assert out(env, "cursor", "delete", "t", "audit") == "deleted cursor 'audit' of t.0\n"
    assert consumers(env, "t") == []
    again = run(env, "cursor", "delete", "t", "audit", expect=3)
    assert b"cursor 'audit' on t.0 does not exist" in again.stderr, again.stderr
    bad = run(env, "tail", "t", "--name", "no/slash", expect=1)
    assert b"cursor name 'no/slash' is invalid" in bad.stderr, bad.stderr


def tail_json(env, topic):
    return [json.loads(l) for l in out(env, "tail", topic, "--format", "json").splitlines()]


def replay(env, *args):
    return json.loads(out(env, "replay", *args, "--json"))


def test_replay_copies_a_range_with_keys_and_headers(env):
    src = publish_sample(env)
    run(env, "topic", "create", "d", "--segment-bytes", "4096", "--segments", "4")
    rep = replay(env, "t", "--into", "d")
    assert (rep["messages"], rep["from"], rep["lost_bytes"]) == (5, 0, 0)
    assert rep["to"] == describe(env, "t")["partition_state"][0]["tail"]
    assert "paced" not in rep
    fields = ("key", "headers", "payload", "payload_base64")
    dst = tail_json(env, "d")
    assert [{f: m.get(f) for f in fields} for m in dst] == [{f: m.get(f) for f in fields}
                                                           for m in src]
    # New stamps, at republishing.
    assert all(b["timestamp_ns"] > a["timestamp_ns"] for a, b in zip(src, dst))

    # [from, to) by position, then by count.
    rep = replay(env, "t", "--into", "d", "--from", str(src[1]["position"]), "--to",
                 str(src[3]["position"]))
    assert (rep["messages"], rep["from"], rep["to"]) == (2, src[1]["position"], src[3]["position"])
    rep = replay(env, "t", "--into", "d", "--from", str(src[2]["position"]), "-n", "2")
    assert (rep["messages"], rep["to"]) == (2, src[4]["position"])
    assert [m.get("payload") for m in tail_json(env, "d")[5:]] == [
        m.get("payload") for m in src[1:3] + src[2:4]]


def test_replay_to_a_time(env):
    run(env, "topic", "create", "t", "--segment-bytes", "4096")
    run(env, "topic", "create", "d", "--segment-bytes", "4096")
    run(env, "publish", "t", "early1", "early2")
    time.sleep(0.01)
    run(env, "publish", "t", "late1", "late2")
    msgs = tail_json(env, "t")
    assert replay(env, "t", "--into", "d", "--to", iso(msgs[2]["timestamp_ns"]))["messages"] == 2
    rep = replay(env, "t", "--into", "d", "--from", iso(msgs[1]["timestamp_ns"]), "--to",
                 iso(msgs[3]["timestamp_ns"]))
    assert (rep["messages"], rep["from"]) == (2, msgs[1]["position"])
    assert [m["payload"] for m in tail_json(env, "d")] == ["early1", "early2", "early2", "late1"]


def test_replay_paced_never_sends_early_and_speeds_up(env):
    run(env, "topic", "create", "t", "--segment-bytes", "4096")
    run(env, "topic", "create", "d", "--segment-bytes", "4096", "--segments", "8")
    for i in range(4):
        if i:
            time.sleep(0.15)
        run(env, "publish", "t", f"m{i}")
    stamps = [m["timestamp_ns"] for m in tail_json(env, "t")]
    recorded = (stamps[-1] - stamps[0]) / 1e9
    assert recorded >= 0.45
    for speed in (1, 10):
        rep = replay(env, "t", "--into", "d", "--speed", str(speed))
        assert rep["messages"] == 4
        p = rep["paced"]
        assert p["speed"] == speed and abs(p["recorded_s"] - recorded) < 1e-6
        # Every send at or after its due time, counted from the anchor: the
        # last one at least recorded / speed after the first.
        assert rep["elapsed_s"] >= recorded / speed
        assert p["drift_s"] >= 0 and p["lateness_us"]["max"] >= p["lateness_us"]["p50"] >= 0
    # Ten times faster is faster (load makes sends late, never early).
    assert rep["elapsed_s"] < recorded / 2


def test_replay_refuses_its_own_partition_and_a_missing_topic(env):
    run(env, "topic", "create", "t", "--segment-bytes", "4096")
    assert b"--into names the partition" in run(env, "replay", "t", "--into", "t",
                                                 expect=2).stderr
    run(env, "replay", "t", "--into", "nope", expect=3)
    run(env, "replay", "t", "--into", "t", "--speed", "-1", expect=2)


def test_a_durable_topic_needs_shmbusd(env, request):
    if request.node.callspec.params["env"] == "embedded":
        # Without shmbusd nothing would record it: refused, naming why.
        assert b"no shmbusd serves bus 'default'" in run(env, "topic", "create", "t",
                                                         "--durable", expect=1).stderr
        assert b"no topics" in run(env, "topic", "list").stdout.lower()
    else:
        run(env, "topic", "create", "t", "--durable")
        assert describe(env, "t")["durable"]


def test_replay_of_a_durable_topic_reads_history_from_its_files(env, request):
    if request.node.callspec.params["env"] == "embedded":
        pytest.skip("a durable topic needs shmbusd (test_a_durable_topic_needs_shmbusd)")
    # A 16 KiB ring; 2,000 messages of 64 B frames: nearly all only on disk.
    run(env, "topic", "create", "t", "--durable", "--segment-bytes", "4096", "--segments", "4")
    run(env, "topic", "create", "d", "--segment-bytes", "65536", "--segments", "4")
    run(env, "publish", "t", input="".join(f"m{i}\n" for i in range(2000)).encode())
    info = describe(env, "t")["partition_state"][0]
    assert info["oldest"] > 0  # the ring no longer holds the start
    rep = replay(env, "t", "--into", "d")
    assert (rep["messages"], rep["from"], rep["lost_bytes"]) == (2000, 0, 0)
    assert [m["payload"] for m in tail_json(env, "d")] == [f"m{i}" for i in range(2000)]
    spill = describe(env, "t")["partition_state"][0]["spill"]
    assert spill["segments"] == 1 and spill["file_bytes"] >= spill["written"] > 0
    assert "1 segment file(s)" in out(env, "topic", "describe", "t")


def test_replay_ends_at_the_tail_and_refuses_an_empty_range(env):
    run(env, "topic", "create", "t", "--segment-bytes", "4096")
    run(env, "topic", "create", "d", "--segment-bytes", "4096", "--segments", "8")
    run(env, "publish", "t", "a", "b", "c")
    msgs = tail_json(env, "t")
    tail = describe(env, "t")["partition_state"][0]["tail"]
    # Past the tail, or a time no message has reached yet: the tail as it was.
    assert (replay(env, "t", "--into", "d", "--to", str(10**12))["to"], 3) == (tail, 3)
    for to in ("2100-01-01", "now"):
        rep = replay(env, "t", "--into", "d", "--to", to)
        assert (rep["messages"], rep["to"]) == (3, tail)
    rep = replay(env, "t", "--into", "d", "--to", "2100-01-01", "-n", "1")
    assert (rep["messages"], rep["to"]) == (1, msgs[1]["position"])
    p = run(env, "replay", "t", "--into", "d", "--from", str(msgs[2]["position"]), "--to",
            str(msgs[1]["position"]), expect=2)
    assert b"is not after --from" in p.stderr
    run(env, "replay", "t", "--into", "d", "--to", "beginning", expect=2)


def test_replay_from_inside_a_frame_says_so(env):
    run(env, "topic", "create", "t", "--segment-bytes", "4096")
    run(env, "topic", "create", "d", "--segment-bytes", "4096")
    run(env, "publish", "t", "x" * 300)  # one frame over several alignment units
    p = run(env, "replay", "t", "--into", "d", "--from", "64", expect=1)
    assert b"not a frame boundary: the frame at 0 spans it" in p.stderr


def test_replay_of_unstamped_messages_with_a_speed_says_it_cannot_pace(env):
    run(env, "topic", "create", "t", "--segment-bytes", "4096")
    run(env, "topic", "create", "d", "--segment-bytes", "4096")
    run(env, "publish", "t", "--no-timestamp", "a", "b")
    p = run(env, "replay", "t", "--into", "d", "--speed", "1", "--json")
    assert json.loads(p.stdout)["messages"] == 2 and "paced" not in json.loads(p.stdout)
    assert b"nothing could be paced" in p.stderr


def test_retention_options(env, request):
    p = run(env, "topic", "create", "t", "--retention-bytes", "1MiB", expect=1)
    assert b"for durable topics" in p.stderr or b"only for a durable topic" in p.stderr
    if request.node.callspec.params["env"] == "embedded":
        pytest.skip("a durable topic needs shmbusd (test_a_durable_topic_needs_shmbusd)")
    run(env, "topic", "create", "t", "--durable", "--retention-bytes", "1GiB",
        "--retention-time", "1h")
    d = describe(env, "t")
    assert (d["retention_bytes"], d["retention_ms"]) == (1 << 30, 3600 * 1000)
    assert "retention      1.0 GiB of files, 3600000 ms" in out(env, "topic", "describe", "t")
    run(env, "topic", "create", "u", "--durable", "--retention-time", "soon", expect=2)
