"""README's first command, `./dev demo`, exits 0 when it worked (and says so)."""
import os
import pathlib
import subprocess

import pytest

SOURCE = pathlib.Path(os.environ["SHMBUS_SOURCE_ROOT"])
BUILD = pathlib.Path(os.environ["SHMBUS_BUILD_ROOT"])


def test_dev_demo_exits_zero_when_it_worked():
    if BUILD.resolve() != (SOURCE / "build").resolve():
        pytest.skip("./dev demo runs the build in build/; this suite was built in " + str(BUILD))
    r = subprocess.run(["bash", str(SOURCE / "dev"), "demo"], cwd=SOURCE, capture_output=True,
                       text=True, timeout=280)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "shmbusd stopped cleanly" in out, out
    assert "round trip" in out.lower() or "rtt" in out.lower(), out
