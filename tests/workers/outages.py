"""Real outages for the fault tests: a TCP proxy in front of MariaDB that can be cut, and a Redis restart."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time

REDIS_START = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379", "--save", "",
               "--appendonly", "no", "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log"]


def redis_alive() -> bool:
    out = subprocess.run(["redis-cli", "-p", "6379", "ping"], check=False, capture_output=True, text=True, timeout=10)
    return out.stdout.strip() == "PONG"


def start_redis(timeout_s: float = 10) -> None:
    if redis_alive():
        return
    subprocess.run(REDIS_START, check=True, timeout=30)
    deadline = time.monotonic() + timeout_s
    while not redis_alive():
        if time.monotonic() > deadline:
            raise AssertionError("redis-server did not come back")
        time.sleep(0.05)


def restart_redis(down_s: float = 1.0) -> None:
    """Stop the real server without saving (everything in it is lost), wait, start it again."""
    subprocess.run(["redis-cli", "-p", "6379", "shutdown", "nosave"], check=False, capture_output=True, timeout=30)
    deadline = time.monotonic() + 10
    while redis_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(down_s)
    start_redis()


class TcpProxy:
    """Forwards a local port to ``target``; :meth:`cut` drops every connection and refuses new ones."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 3306)):
        self.target = target
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            with self._lock:
                self._conns -= {src, dst}

    def cut(self) -> None:
        """The database 'disappears': open connections reset, new ones refused."""
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone does not
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def restore(self) -> None:
        if self._listener is None:
            self.start()

    close = cut
