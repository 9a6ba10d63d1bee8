"""`tunesmith serve`: load the models with the chosen engine, build the app, run uvicorn in a thread and the
decoding loop on the main thread (why: tunesmith/webserver.py).

Keys come from TUNESMITH_API_KEY or a keys file (one per line); `--api-key` still works, but a key on the command
line is visible to every user of the machine in `ps`. The server binds 127.0.0.1 unless told otherwise, and refuses
to listen on any other address without a key unless `--insecure` says that is intended.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
from pathlib import Path

from tunesmith.errors import ConfigError
from tunesmith.infer import engines

log = logging.getLogger(__name__)
MAX_CONNECTIONS = 512  # beyond this uvicorn answers 503 at once instead of queueing sockets without end


def load_models(specs: list[str], names: list[str] | None = None, device: str = "auto") -> dict:
    """The transformers engine's models (kept for callers of the former API)."""
    return engines.load("transformers", specs, names or [], device)


def read_keys(flag_key: str | None, key_file: str | None) -> list[str]:
    keys = [flag_key] if flag_key else []
    if os.environ.get("TUNESMITH_API_KEY"):
        keys.append(os.environ["TUNESMITH_API_KEY"])
    if key_file:
        path = Path(key_file).expanduser()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"serve: cannot read the keys file {path}: {e}") from None
        found = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        if not found:
            raise ConfigError(f"serve: the keys file {path} holds no key (one key per line)")
        keys += found
    for key in keys:
        if any(c.isspace() for c in key) or not key.isprintable():
            raise ConfigError("serve: an API key contains spaces or control characters; use a plain token")
    return list(dict.fromkeys(keys))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, keys: list[str], insecure: bool) -> None:
    if not keys and not insecure and not is_loopback(host):
        raise ConfigError(f"serve: refusing to listen on {host} without an API key: anyone who can reach this "
                          f"machine could use it. Set TUNESMITH_API_KEY (or --api-key-file), or pass --insecure.")


def serve(specs: list[str], names: list[str], host: str, port: int, keys: list[str], max_batch: int,
          engine: str = "auto", device: str = "auto", insecure: bool = False, limits=None,
          dtype: str = "auto", threads: int | None = None) -> None:
    from tunesmith.serve.app import Limits, create_app
    from tunesmith.webserver import WebServer, bind

    check_bind(host, keys, insecure)
    sock = bind(host, port, "serve")
    limits = limits or Limits(max_batch=max_batch)
    models = engines.load(engine, specs, names, device, rows=max(max_batch, 8), dtype=dtype, threads=threads)
    app = create_app(models, keys, limits, batcher_thread=False)
    server = WebServer(app, sock, "serve", limit_concurrency=MAX_CONNECTIONS, timeout_keep_alive=30,
                       timeout_graceful_shutdown=5)
    described = ", ".join(f"{name} [{m.engine.describe()}]" for name, m in models.items())
    log.info("serving %s on http://%s:%d/v1%s", described, host, port,
             " (API key required)" if keys else " (no API key)")
    signal.signal(signal.SIGTERM, _interrupt)  # a service manager's stop: the same clean exit as Ctrl-C
    try:
        app.app.state.batcher.run(until=lambda: not server.running)  # app: the Guard around FastAPI
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def _interrupt(_signum, _frame):
    raise KeyboardInterrupt
