"""`make lab` opens JupyterLab without its news pop-up and without nbgrader's panels: the
Makefile points JUPYTER_CONFIG_PATH at jupyter-config/, and JupyterLab and Jupyter Server read
these settings from there (checked with and without the folder)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "jupyter-config"
NEWS = "@jupyterlab/apputils-extension:announcements"


def settings(monkeypatch, config_path: str | None) -> dict:
    """What Jupyter Server and JupyterLab read from their config paths right now."""
    from jupyter_server.serverapp import ServerApp
    from jupyterlab_server.config import get_page_config

    if config_path:
        monkeypatch.setenv("JUPYTER_CONFIG_PATH", config_path)
    else:
        monkeypatch.delenv("JUPYTER_CONFIG_PATH", raising=False)
    app = ServerApp()
    app.load_config_file()
    app.find_server_extensions()
    disabled = get_page_config([], None).get("disabledExtensions", [])
    return {"extensions": dict(app.jpserver_extensions), "disabled": list(disabled)}


def test_the_makefile_points_jupyterlab_at_the_folder():
    lab = re.search(r"^lab:.*\n\t(.+)$", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert "JUPYTER_CONFIG_PATH=$(CURDIR)/jupyter-config" in lab
    assert "--ServerApp.jpserver_extensions" not in lab  # it would replace the whole dict


def test_the_folder_turns_off_the_news_and_nbgrader(monkeypatch):
    with_folder, without = settings(monkeypatch, str(CONFIG)), settings(monkeypatch, None)
    assert NEWS in with_folder["disabled"] and "@jupyter/nbgrader" in with_folder["disabled"]
    assert with_folder["extensions"]["jupyterlab"] is True  # JupyterLab itself still loads
    nbgrader = [name for name in with_folder["extensions"] if name.startswith("nbgrader")]
    assert nbgrader and not any(with_folder["extensions"][n] for n in nbgrader)
    # without the folder nbgrader's extensions load and the news plugin is on: the folder matters
    assert NEWS not in without["disabled"] and any(without["extensions"][n] for n in nbgrader)
