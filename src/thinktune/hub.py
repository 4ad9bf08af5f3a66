"""Whether the Hugging Face Hub can be asked at all: offline, huggingface_hub retries for ~25 s
before it fails, so a DNS look-up decides first (`thinktune plan`, the R1 tokenizer)."""

from __future__ import annotations

import socket


def offline() -> bool:
    """True when HF_HUB_OFFLINE is set or the hub's host does not resolve."""
    from huggingface_hub import constants

    host = constants.ENDPOINT.split("://")[-1].split("/")[0].split(":")[0]
    try:
        return bool(constants.HF_HUB_OFFLINE) or not socket.getaddrinfo(host, 443)
    except OSError:
        return True
