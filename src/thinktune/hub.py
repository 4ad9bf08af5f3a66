"""The hubs: whether the Hugging Face Hub can be asked at all (offline, huggingface_hub retries for
~25 s before it fails, so a DNS look-up decides first: `thinktune plan`, the R1 tokenizer), and
ModelScope models and datasets by a `modelscope:` prefix."""

from __future__ import annotations

import importlib.util
import os
import socket
from pathlib import Path

from .errors import UserError


def unreachable(endpoint: str) -> bool:
    """True when the host of `endpoint` (a URL) does not resolve."""
    host = endpoint.split("://")[-1].split("/")[0].split(":")[0]
    try:
        return not socket.getaddrinfo(host, 443)
    except OSError:
        return True


def offline() -> bool:
    """True when HF_HUB_OFFLINE is set or the hub's host does not resolve."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or unreachable(constants.ENDPOINT)


# ModelScope (魔搭社区), for models and datasets, next to the Hugging Face Hub (issue 15). A prefix
# on the name, `modelscope:deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B`, rather than LLaMA-Factory's
# environment switch (USE_MODELSCOPE_HUB=1): the source is then written in config.yaml, the model
# card and every command line, so a run says where its model came from and repeats without an
# environment nobody recorded, and one run can take its model from ModelScope and data elsewhere.
MODELSCOPE = "modelscope:"
MODELSCOPE_INSTALL = 'pip install modelscope (or pip install -e ".[modelscope]")'


def modelscope_id(name: str) -> str | None:
    """The ModelScope repo id of a `modelscope:` name, else None."""
    return name[len(MODELSCOPE) :].strip() if name.startswith(MODELSCOPE) else None


def modelscope_offline() -> bool:
    """True when the ModelScope endpoint's host does not resolve: the cache is then all there is
    (modelscope itself retries for ~15 s first)."""
    return unreachable(os.environ.get("MODELSCOPE_ENDPOINT", "https://modelscope.cn"))


def modelscope_download(repo_id: str, repo_type: str = "model", allow: list[str] | None = None) -> Path:
    """The local folder of a ModelScope model or dataset: downloaded once into the modelscope
    cache (MODELSCOPE_CACHE, default ~/.cache/modelscope), read from there when offline."""
    kind = "models" if repo_type == "model" else "datasets"
    if not repo_id or repo_id.count("/") != 1:
        raise UserError(f"'{MODELSCOPE}{repo_id}': a ModelScope id is owner/name, e.g. {MODELSCOPE}deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B.")
    if importlib.util.find_spec("modelscope") is None:
        raise UserError(f"'{MODELSCOPE}{repo_id}' needs the modelscope package, which is not installed: {MODELSCOPE_INSTALL}.")
    from modelscope import snapshot_download

    offline = modelscope_offline()
    cache = os.environ.get("MODELSCOPE_CACHE")  # read here, not at modelscope's import, so a change applies
    try:
        return Path(snapshot_download(repo_id, repo_type=repo_type, cache_dir=cache, local_files_only=offline, allow_patterns=allow))
    except Exception as e:  # noqa: BLE001 - network, not found and cache misses end the same way for the user
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        where = "is not in the local ModelScope cache, and modelscope.cn cannot be reached" if offline else "could not be downloaded from ModelScope"
        raise UserError(
            f"The ModelScope {repo_type} '{repo_id}' {where} ({type(e).__name__}: {why}). Check the id at https://modelscope.cn/{kind}/{repo_id}; "
            f"offline, download it once where there is a network (modelscope download --{repo_type} {repo_id}) and copy the cache "
            f"({cache or '~/.cache/modelscope'}), or give a local folder."
        ) from None
