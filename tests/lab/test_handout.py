"""`paykit lessons copy DIR` and `paykit lessons open [DIR]`: the lessons for a student who
installed paykit with pip (the copy from an installed wheel is in tests/test_wheel.py)."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request

from paykit import packaged
from paykit.lab.lessons import wait_until

NEWS = "@jupyterlab/apputils-extension:announcements"
LAB_READY_S = 90.0


def paykit(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "paykit", *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        **kwargs,
    )


def test_copy_writes_every_lesson_and_says_so(tmp_path):
    target = tmp_path / "my lessons"
    out = paykit("lessons", "copy", str(target))
    assert out.returncode == 0, out.stderr
    lessons = sorted(p.name for p in packaged.lessons_dir().glob("[0-9][0-9]_*.ipynb"))
    labs = sorted(p.name for p in (packaged.lessons_dir() / "labs").glob("lab_*.ipynb"))
    starters = sorted(p.name for p in (packaged.lessons_dir() / "labs").glob("*_starter.py"))
    assert sorted(p.name for p in target.iterdir()) == sorted([*lessons, "README.md", "labs"])
    assert sorted(p.name for p in (target / "labs").iterdir()) == sorted([*labs, *starters])
    assert labs and starters  # each sheet beside the starter it imports
    for name in lessons:
        assert f"[lessons] wrote {target / name}" in out.stdout
        assert (target / name).read_bytes() == (packaged.lessons_dir() / name).read_bytes()


def test_copy_refuses_to_overwrite_unless_forced(tmp_path):
    assert paykit("lessons", "copy", str(tmp_path)).returncode == 0
    mine = tmp_path / "01_tour.ipynb"
    mine.write_text("my answers")
    again = paykit("lessons", "copy", str(tmp_path))
    assert again.returncode == 1
    assert "in " + str(tmp_path) + " already (01_tour.ipynb" in again.stderr
    assert "--force" in again.stderr and again.stdout == ""
    assert mine.read_text() == "my answers", "nothing was overwritten"
    forced = paykit("lessons", "copy", str(tmp_path), "--force")
    assert forced.returncode == 0 and f"wrote {mine}" in forced.stdout
    assert mine.read_bytes() == (packaged.lessons_dir() / "01_tour.ipynb").read_bytes()


def test_the_student_action_still_works():
    out = paykit("lessons", "student", "--help")
    assert out.returncode == 0 and "--check" in out.stdout
    assert "copy" in paykit("lessons", "--help").stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_open_copies_the_lessons_and_starts_jupyterlab_without_the_news(tmp_path):
    folder, port, token = tmp_path / "course", free_port(), secrets.token_hex(16)
    log = open(tmp_path / "open.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "paykit", "lessons", "open", str(folder), "--no-browser",
         f"--ServerApp.port={port}", "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1",
         f"--IdentityProvider.token={token}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "user-jupyter")},
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def get(path: str) -> str:
        with urllib.request.urlopen(f"{base}{path}?token={token}", timeout=5) as reply:
            return reply.read().decode()

    def answering() -> bool:
        assert proc.poll() is None, (tmp_path / "open.log").read_text()[-3000:]
        try:
            return bool(get("/api/status"))
        except (urllib.error.URLError, OSError):
            return False

    try:
        wait_until(answering, LAB_READY_S, what="JupyterLab answering", every_s=0.5)
        names = {item["name"] for item in json.loads(get("/api/contents"))["content"]}
        assert {"01_tour.ipynb", "README.md"} <= names, "JupyterLab serves the copied lessons"
        page = get("/lab")
        config = json.loads(
            re.search(r'id="jupyter-config-data"[^>]*>(.*?)</script>', page, re.S)[1]
        )
        assert NEWS in config["disabledExtensions"], "paykit's settings: no news pop-up"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)
        log.close()
    assert "[lessons] wrote" in (tmp_path / "open.log").read_text()
