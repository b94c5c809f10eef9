"""The hub over PostgreSQL, run by the wheel's own `syncline` command (`python -m syncline`):
a cluster started for the test (initdb and pg_ctl in a temporary folder, Unix socket only),
a namespace and a token made with `syncline hub`, `syncline serve --postgres`, and two Python
replicas converging through it. Needs PostgreSQL's server binaries (pg_config --bindir)."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Iterator, List

import pytest

from conftest import TODOS, MakeReplica, todos
from test_net import free_port


def pg_bin() -> pathlib.Path:
    found = shutil.which("pg_config")
    if found:
        out = subprocess.run([found, "--bindir"], capture_output=True, text=True, check=False)
        candidate = pathlib.Path(out.stdout.strip())
        if (candidate / "initdb").exists():
            return candidate
    fallback = pathlib.Path("/usr/lib/postgresql/15/bin")
    if not (fallback / "initdb").exists():
        pytest.fail("PostgreSQL's server binaries are needed (initdb, pg_ctl)")
    return fallback


@pytest.fixture
def postgres() -> Iterator[str]:
    """A cluster in a temporary folder; yields its connection string."""
    bin_dir = pg_bin()
    # Directly in the temporary directory: pytest's own folders are closed to other users.
    folder = pathlib.Path(tempfile.mkdtemp(prefix="syncline-pg-"))
    as_user: List[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(folder, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, log = folder / "data", folder / "log"
    subprocess.run(
        [*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "syncline", "--auth=trust", "-E", "UTF8"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    options = f"-k {folder} -c listen_addresses='' -p 5432"
    subprocess.run(
        [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    try:
        yield f"host={folder} port=5432 user=syncline dbname=postgres"
    finally:
        subprocess.run(
            [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            check=False,
            stdout=subprocess.DEVNULL,
        )
        shutil.rmtree(folder, ignore_errors=True)


def wheel_command(*args: str) -> List[str]:
    """The wheel's own `syncline` command line (not $SYNCLINE_CLI, the Rust build)."""
    return [sys.executable, "-m", "syncline", *args]


def test_the_wheels_command_serves_a_hub_over_postgresql(
    make_replica: MakeReplica, postgres: str, tmp_path: pathlib.Path
) -> None:
    schema = tmp_path / "schema.sql"
    schema.write_text(TODOS)
    hub = ["--postgres", postgres]
    subprocess.run(wheel_command("hub", "create", *hub, "team", "--schema", str(schema), "--table", "todos"), check=True)
    token = subprocess.run(
        wheel_command("hub", "token", *hub, "team"), check=True, capture_output=True, text=True
    ).stdout.strip()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (tmp_path / "serve.log").open("wb") as log:
        server = subprocess.Popen(
            wheel_command("serve", *hub, "--port", str(port)), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                assert server.poll() is None, (tmp_path / "serve.log").read_text(errors="replace")
                try:
                    request = urllib.request.Request(f"{url}/v1/info", headers={"Authorization": f"Bearer {token}"})
                    with urllib.request.urlopen(request, timeout=2) as answer:
                        assert json.loads(answer.read())["protocol"] == 1
                        break
                except (urllib.error.URLError, ConnectionError, OSError):
                    assert time.monotonic() < deadline, "syncline serve --postgres did not answer within 30 s"
                    time.sleep(0.1)
            a, b = make_replica("a"), make_replica("b")
            a.execute("INSERT INTO todos(id, title) VALUES (1, 'from python')")
            a.sync(url, token=token)
            b.sync(url, token=token)
            assert todos(b) == todos(a) == [(1, "from python", 0, None)]
        finally:
            server.kill()
            server.wait(10)
