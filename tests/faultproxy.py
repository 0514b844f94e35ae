"""A fault-injecting TCP proxy for tests: cut, stall, slow and refuse connections.

Put it between a client and a server (PostgreSQL's unix socket or a TCP port) and break
the connection on demand, the way asyncpg's own suite does with
``trigger_connectivity_loss()``::

    proxy = await FaultProxy.start(unix_path=f"{datadir}/.s.PGSQL.5432")
    dsn = f"postgresql://postgres@127.0.0.1:{proxy.port}/{database}"
    ...
    proxy.cut()            # every open connection is reset now
    proxy.refuse(True)     # new connections are closed as soon as they arrive
    proxy.stall(True)      # bytes stop flowing both ways (connections stay open)
    proxy.slow(0.05)       # each chunk waits 50 ms
    proxy.heal()           # all of it undone
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["FaultProxy"]

_CHUNK = 65536


class FaultProxy:
    """Forwards 127.0.0.1:``port`` to a TCP or unix-socket target, with faults on demand."""

    def __init__(self, *, host: str | None, port: int | None, unix_path: str | None) -> None:
        self._target_host = host
        self._target_port = port
        self._unix_path = unix_path
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._refusing = False
        self._delay = 0.0
        self.accepted = 0
        """Connections accepted so far (refused ones included)."""
        self.cuts = 0

    @classmethod
    async def start(
        cls, *, host: str | None = None, port: int | None = None, unix_path: str | None = None
    ) -> FaultProxy:
        if (unix_path is None) == (host is None or port is None):
            raise ValueError("give either unix_path or host and port")
        proxy = cls(host=host, port=port, unix_path=unix_path)
        proxy._server = await asyncio.start_server(proxy._accept, "127.0.0.1", 0)
        return proxy

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    # -- faults ---------------------------------------------------------------------

    def cut(self) -> None:
        """Reset every open connection now (new ones still go through)."""
        self.cuts += 1
        for writer in list(self._writers):
            transport = writer.transport
            transport.abort()
        self._writers.clear()

    def refuse(self, on: bool = True) -> None:
        """While on, a new connection is closed as soon as it is accepted."""
        self._refusing = on

    def stall(self, on: bool = True) -> None:
        """While on, no byte is forwarded either way; connections stay open."""
        if on:
            self._flowing.clear()
        else:
            self._flowing.set()

    def slow(self, delay: float) -> None:
        """Wait ``delay`` seconds before forwarding each chunk (0: full speed)."""
        self._delay = delay

    def heal(self) -> None:
        """Undo refuse, stall and slow."""
        self.refuse(False)
        self.stall(False)
        self.slow(0.0)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    # -- forwarding -----------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._refusing:
            writer.transport.abort()
            return
        try:
            if self._unix_path is not None:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_unix_connection(self._unix_path), 10
                )
            else:
                assert self._target_host is not None and self._target_port is not None
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(self._target_host, self._target_port), 10
                )
        except (OSError, TimeoutError):
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        pipes = [
            asyncio.create_task(self._pipe(reader, up_writer, writer)),
            asyncio.create_task(self._pipe(up_reader, writer, up_writer)),
        ]
        self._pipes.update(pipes)
        for pipe in pipes:
            pipe.add_done_callback(self._pipes.discard)

    async def _pipe(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, other: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                data = await src.read(_CHUNK)
                if not data:
                    break
                await self._flowing.wait()
                if self._delay:
                    await asyncio.sleep(self._delay)
                if dst.transport.is_closing():
                    break
                dst.write(data)
                await dst.drain()
        except (OSError, ConnectionError):
            pass
        finally:
            # one side gone: the other goes too, as with a real broken connection
            for w in (dst, other):
                self._writers.discard(w)
                w.transport.abort()
