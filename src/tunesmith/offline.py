"""Hub ids on a machine without a network: the local hub cache at once, or one line saying it is not there.

transformers and datasets ask the hub about every hub id, even one already in the local cache. With no network,
huggingface_hub retries each request five times with back-off and prints every retry: 25 to 50 seconds of noise
per model or dataset before the error (or before it falls back to the cache). tunesmith is meant to work offline,
so before a hub id is used, one short connection attempt asks whether the hub can be reached at all. When it
cannot, the id becomes its cached snapshot folder, which the libraries load with no network call, or the caller
reports in one line that it is not cached. With a network, or in the hub's own offline mode (`HF_HUB_OFFLINE=1`,
where the libraries read the cache themselves without retrying), ids pass through unchanged.
"""

from __future__ import annotations

import logging
import socket
import time
import urllib.request
from urllib.parse import urlparse

from tunesmith.once import log_once

log = logging.getLogger(__name__)
PROBE_SECONDS = 3.0  # a reachable hub answers a TCP connection in well under a second
RECHECK_SECONDS = 30.0  # a long-lived process (the Web UI, serve) notices a network that came or went
_last_probe: tuple[float, bool] | None = None  # (when, answer)


def cached_if_offline(repo_id: str, repo_type: str = "model") -> str | None:
    """`repo_id` where the hub can be asked (or the hub's own offline mode is on); otherwise its cached snapshot
    folder, or None when this id was never downloaded here."""
    from huggingface_hub import constants, snapshot_download

    if constants.HF_HUB_OFFLINE or hub_reachable():
        return repo_id
    try:
        folder = snapshot_download(repo_id, repo_type=repo_type, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached, or not a valid id: either way nothing here to load
        return None
    log_once(log, f"{repo_id}: the hub cannot be reached; using the cached copy in {folder}")
    return folder


def hub_reachable() -> bool:
    """Can a TCP connection be opened to the hub endpoint (`HF_ENDPOINT`), or to the HTTPS proxy that would carry
    the request? The answer is kept for RECHECK_SECONDS."""
    global _last_probe
    now = time.monotonic()
    if _last_probe is None or now - _last_probe[0] > RECHECK_SECONDS:
        _last_probe = (now, _connects())
    return _last_probe[1]


def _connects() -> bool:
    from huggingface_hub import constants

    endpoint = urlparse(constants.ENDPOINT)
    host, port = endpoint.hostname, endpoint.port or (443 if endpoint.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(endpoint.scheme)
    if proxy and host and not urllib.request.proxy_bypass(host):
        via = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        host, port = via.hostname, via.port or 80
    try:
        socket.create_connection((host, port), timeout=PROBE_SECONDS).close()
    except (OSError, ValueError):  # no route, no DNS, refused, timed out; or no host at all in the endpoint
        log.debug("hub endpoint %s:%s cannot be reached", host, port)
        return False
    return True
