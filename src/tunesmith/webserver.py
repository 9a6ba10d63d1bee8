"""uvicorn in a thread, for the Web UI and `tunesmith serve`: the socket bound first (a port in use is one clear
line, at once), then the server started and waited for.

In a thread uvicorn leaves signals alone, so Ctrl-C reaches the main thread. `tunesmith serve` needs that for speed,
not only for Ctrl-C: its decoding loop runs on the main thread. torch's OpenMP runtime keeps one pool of worker
threads per thread that starts parallel work, and when the pools together hold more threads than the machine has
cores it stops spinning between parallel regions and sleeps instead; decoding from a second thread, after the model
was loaded on the main one, ran about 1.4x slower per token on a 2-core CPU.
"""

from __future__ import annotations

import socket
import threading
import time

from tunesmith.errors import TunesmithError

START_TIMEOUT_S = 60.0


def bind(host: str, port: int, verb: str) -> socket.socket:
    if not 0 < port < 65536:  # the resolver wraps bigger numbers (99999 -> 34463): a server on a port nobody named
        raise TunesmithError(f"{verb}: --port {port} is not a port; use 1-65535")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        raise TunesmithError(f"{verb}: cannot listen on {host}:{port} (in use?); pick another with --port") from None
    sock.listen(2048)
    sock.set_inheritable(False)  # processes started from here (the Web UI's CLI jobs) must not hold the port
    return sock


class WebServer:
    def __init__(self, app, sock: socket.socket, verb: str, **config):
        import uvicorn

        config.setdefault("log_level", "warning")
        self.server = uvicorn.Server(uvicorn.Config(app, access_log=False, **config))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True,
                                       name=f"tunesmith-{verb}-http")
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise TunesmithError(f"{verb}: the web server did not start; run with -v to see why")
            time.sleep(0.05)

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def wait(self) -> None:
        """Until the server stops (Ctrl-C arrives in the caller as KeyboardInterrupt)."""
        while self.thread.is_alive():
            self.thread.join(0.5)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
