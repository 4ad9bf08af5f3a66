"""`thinktune ui`: the page in both languages on one local server (English at /, Chinese at /zh/).

Listens on 127.0.0.1 unless another host is asked for (then says plainly who can reach it); an
optional password (user name `thinktune`) guards both languages.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

LOOPBACK = ("127.0.0.1", "localhost", "::1")
USER = "thinktune"


def make_app(workspace: Path, start_config, password: str | None = None):
    """The FastAPI app with both languages mounted (tests serve it too)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a machine offline
    import fastapi
    import gradio as gr

    from .app import CSS, build
    from .page import Page

    page = Page(workspace.resolve(), start_config)
    app = fastapi.FastAPI()
    auth = (USER, password) if password else None
    # /zh first: a mount at the root would answer every path, /zh/ included.
    app = gr.mount_gradio_app(app, build(page, "zh", "/"), path="/zh", auth=auth, css=CSS, footer_links=[])
    app = gr.mount_gradio_app(app, build(page, "en", "/zh/"), path="", auth=auth, css=CSS, footer_links=[])
    return app, page


def serve(host: str, port: int, lang: str, workspace: Path, start_config, password: str | None = None) -> int:
    import uvicorn

    app, _ = make_app(workspace, start_config, password)
    base = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    if host not in LOOPBACK:
        print(
            f"thinktune ui: WARNING: listening on {host}: anyone who can reach this machine on port {port} can start runs and read the workspace"
            f"{'' if password else ' (no --password is set)'}.",
            file=sys.stderr,
            flush=True,
        )
    print(
        f"thinktune ui: {base}{'/zh/' if lang == 'zh' else '/'}  (English {base}/, 中文 {base}/zh/); workspace {workspace.resolve()}. Ctrl-C stops the page; runs it started go on.",
        flush=True,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning")
    return 0
