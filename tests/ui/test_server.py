"""`thinktune ui` (ui/server.py): both languages served, loopback by default, a warning for any
other host, and a password that guards both."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from thinktune import config
from thinktune.cli import main
from thinktune.ui.server import make_app


def test_both_languages_are_served_and_a_password_guards_both(tmp_path):
    open_app, _ = make_app(tmp_path, config.Config())
    client = TestClient(open_app)
    en, zh = client.get("/config"), client.get("/zh/config")
    assert en.status_code == zh.status_code == 200
    assert '"Train"' in en.text and '"训练"' in zh.text and '"训练"' not in en.text
    guarded, _ = make_app(tmp_path, config.Config(), password="s3cret")
    client = TestClient(guarded)
    for prefix in ("", "/zh"):
        assert client.get(f"{prefix}/config").status_code == 401
        login = client.post(f"{prefix}/login", data={"username": "thinktune", "password": "wrong"})
        assert login.status_code == 400
        assert client.post(f"{prefix}/login", data={"username": "thinktune", "password": "s3cret"}).status_code == 200
        assert client.get(f"{prefix}/config").status_code == 200


def test_another_host_than_loopback_is_said_plainly(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "thinktune", "ui", "--host", "0.0.0.0", "--port", str(port), "--workspace", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stderr.readline() if proc.stderr else ""
    finally:
        proc.terminate()
        proc.wait(30)
    assert "WARNING: listening on 0.0.0.0: anyone who can reach this machine" in line and "no --password is set" in line


@pytest.mark.parametrize(
    "argv,message",
    [
        (["ui", "--workspace", "/no/such/folder"], "--workspace /no/such/folder: no such folder."),
        (["ui", "--port", "70000"], "--port 70000: give a port in 1-65535."),
        (["ui", "--config", "/no/such.yaml"], "Config file /no/such.yaml does not exist."),
    ],
)
def test_bad_flags_are_one_paragraph_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == f"thinktune: error: {message}"
