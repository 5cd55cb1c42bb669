"""An S3 endpoint that accepts connections and never answers (a hung proxy, a black hole)."""

import socket
import threading
import time


class SilentEndpoint:
    """A TCP server that accepts every connection and never sends a byte."""

    def __init__(self):
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(512)
        self.server.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                connection, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.held.append(connection)  # held open, never answered

    def wait_for_connections(self, count: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while len(self.held) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return len(self.held)

    def __enter__(self) -> "SilentEndpoint":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self):
        self._stop.set()
        self._thread.join(5)
        for connection in self.held:
            connection.close()
        self.server.close()

