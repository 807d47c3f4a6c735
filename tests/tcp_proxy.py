"""A real TCP proxy on 127.0.0.1 for fault tests: it relays bytes both ways and can cut connections at the
worst moment for a client, after its request reached the server and before the answer came back.

`cut_after_next_request(refuse_for)`: the next chunk any client sends is relayed to the server, then that
client's connection (and every other one) is closed without relaying what the server answers, and new
connections are refused for `refuse_for` seconds. The server really received and executed the request.
"""

from __future__ import annotations

import asyncio
import threading
import time


class TcpProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._cut_next = False
        self._cutting = False
        self._refuse_until = 0.0
        self._refuse_for = 0.0
        self._writers: set[asyncio.StreamWriter] = set()
        self.cuts = 0
        self._thread = threading.Thread(target=self._run, name="tcp-proxy", daemon=True)

    def start(self) -> TcpProxy:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the proxy did not start")
        return self

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def cut_after_next_request(self, refuse_for: float) -> None:
        self._loop.call_soon_threadsafe(self._arm, refuse_for)

    def _arm(self, refuse_for: float) -> None:
        self._cut_next = True
        self._refuse_for = refuse_for

    def close(self) -> None:
        def stop() -> None:
            for writer in list(self._writers):
                writer.transport.abort()
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
            self._loop.call_later(0.05, self._loop.stop)

        self._loop.call_soon_threadsafe(stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._started.set()
        self._loop.run_forever()
        server.close()
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if time.monotonic() < self._refuse_until:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))

        async def client_to_server() -> None:
            while data := await reader.read(65536):
                if self._cut_next:
                    self._cutting = True  # from now on nothing the server says reaches any client
                up_writer.write(data)
                await up_writer.drain()
                if self._cut_next:
                    self._cut_next = False
                    self.cuts += 1
                    self._refuse_until = time.monotonic() + self._refuse_for
                    await asyncio.sleep(0.05)  # the server executes it; its answer is never relayed
                    for open_writer in list(self._writers):
                        open_writer.transport.abort()
                    self._cutting = False
                    return

        async def server_to_client() -> None:
            while data := await up_reader.read(65536):
                if self._cutting:
                    continue
                writer.write(data)
                await writer.drain()

        try:
            await asyncio.gather(client_to_server(), server_to_client())
        except (ConnectionError, OSError):
            pass
        finally:
            for one in (writer, up_writer):
                self._writers.discard(one)
                if not self._loop.is_closed():
                    one.transport.abort()
