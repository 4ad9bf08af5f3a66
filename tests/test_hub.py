"""hub.offline: decided at once, before huggingface_hub's retries (real look-ups, no network needed)."""

from huggingface_hub import constants

from thinktune import hub


def test_offline_when_asked_or_when_the_host_does_not_resolve(monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "https://localhost:8443")
    assert hub.offline() is False  # localhost resolves: the hub would be asked
    monkeypatch.setattr(constants, "ENDPOINT", "https://no-such-host.invalid")
    assert hub.offline() is True  # .invalid never resolves (RFC 6761)
    monkeypatch.setattr(constants, "ENDPOINT", "https://localhost:8443")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert hub.offline() is True
