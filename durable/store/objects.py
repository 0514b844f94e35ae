"""Where archive files are kept: a directory, or a bucket of any S3 API (AWS, MinIO,
Scaleway), named by a URI — a path (``/var/lib/durable/archive``) or
``s3://bucket/prefix``.

S3 is reached as the S3 trigger reaches it: the endpoint from ``DURABLE_S3_ENDPOINT``
(unset: AWS), the region from ``AWS_DEFAULT_REGION``, and the credentials the usual
way (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, a profile, an instance role).
A file is whole or absent: a directory's file is written aside, flushed to disk and
renamed into place (its directory flushed too); an S3 put is atomic. Failures become
:class:`~durable.core.errors.ArchiveError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar

from durable.core.errors import ArchiveError

__all__ = ["WRITERS", "ObjectStore", "open_objects", "read_object", "split_s3_uri"]

T = TypeVar("T")
WRITERS = 16
"""Files a directory store writes at once."""


class ObjectStore(Protocol):
    """Files under one base URI; used as ``async with open_objects(uri) as objects``."""

    base: str

    def uri(self, key: str) -> str:
        """The URI of the file ``key`` (a path relative to the base)."""
        ...

    async def put(self, key: str, data: bytes) -> str:
        """Write the file whole (replacing one of the same key); returns its URI."""
        ...

    async def get(self, key: str) -> bytes:
        """The file's bytes; ArchiveError (not retryable) when it does not exist."""
        ...

    async def sync(self) -> None:
        """Make every file put so far durable: a directory's new entries are flushed
        (the files themselves are by ``put``); on S3, a put is durable already."""
        ...

    async def __aenter__(self) -> ObjectStore: ...

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` as ``("bucket", "some/prefix")``."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise ArchiveError(
            f"{uri!r} names no bucket", hint="use s3://BUCKET/PREFIX", retryable=False
        )
    return bucket, prefix.strip("/")


def open_objects(uri: str, environ: Mapping[str, str] | None = None) -> ObjectStore:
    """The object store at ``uri``: ``s3://bucket/prefix``, else a directory path (or
    ``file://`` URI). Use it as an async context manager."""
    if uri.startswith("s3://"):
        return S3Objects(uri, environ if environ is not None else os.environ)
    return DirObjects(uri)


async def read_object(uri: str, environ: Mapping[str, str] | None = None) -> bytes:
    """The bytes of the file at ``uri`` (as :meth:`ObjectStore.uri` gave it)."""
    if uri.startswith("s3://"):
        bucket, key = split_s3_uri(uri)
        async with S3Objects(f"s3://{bucket}", environ or os.environ) as objects:
            return await objects.get(key)
    path = Path(uri.removeprefix("file://"))
    async with DirObjects(str(path.parent)) as objects:
        return await objects.get(path.name)


class DirObjects:
    """Files in a directory (created when missing). Writes run in threads of its own,
    many at once: each file is flushed to disk before the tombstone naming it is
    recorded, and concurrent flushes share the file system's journal commits."""

    def __init__(self, uri: str) -> None:
        if not uri.strip():
            raise ArchiveError("an empty archive location", hint="give a directory or s3://…")
        self.root = Path(uri.removeprefix("file://")).expanduser().resolve()
        self.base = str(self.root)
        self._unsynced: set[Path] = set()
        self._threads: ThreadPoolExecutor | None = None

    async def __aenter__(self) -> DirObjects:
        self._threads = ThreadPoolExecutor(WRITERS, thread_name_prefix="durable-archive")
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=True)
            self._threads = None

    async def _in_thread(self, work: Callable[[], T]) -> T:
        if self._threads is None:
            return await asyncio.to_thread(work)
        return await asyncio.get_running_loop().run_in_executor(self._threads, work)

    def uri(self, key: str) -> str:
        return str(self.root / key)

    async def put(self, key: str, data: bytes) -> str:
        try:
            await self._in_thread(lambda: self._put(self.root / key, data))
        except OSError as exc:
            raise ArchiveError(
                f"cannot write {self.root / key}: {exc.strerror or exc}",
                hint="is the directory writable, and is there room on its disk?",
            ) from exc
        return self.uri(key)

    def _put(self, path: Path, data: bytes) -> None:
        made = path.parent
        while not made.exists():  # new directories: their parents' entries to flush too
            self._unsynced.add(made.parent)
            made = made.parent
        path.parent.mkdir(parents=True, exist_ok=True)
        aside = path.with_name(path.name + ".partial")
        with aside.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(aside, path)
        self._unsynced.add(path.parent)

    async def sync(self) -> None:
        # a rename is durable once its directory is: before any event is deleted
        dirs, self._unsynced = self._unsynced, set()
        try:
            await self._in_thread(lambda: _fsync_dirs(sorted(dirs)))
        except OSError as exc:
            raise ArchiveError(f"cannot flush {self.root}: {exc.strerror or exc}") from exc

    async def get(self, key: str) -> bytes:
        path = self.root / key
        try:
            return await self._in_thread(path.read_bytes)
        except FileNotFoundError:
            raise ArchiveError(
                f"the archive file {path} is missing",
                hint="was it moved or deleted? put it back from a backup",
                retryable=False,
            ) from None
        except OSError as exc:
            raise ArchiveError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _fsync_dirs(dirs: list[Path]) -> None:
    for d in dirs:
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class S3Objects:
    """Objects under ``s3://bucket/prefix``; one client while open."""

    def __init__(self, uri: str, environ: Mapping[str, str]) -> None:
        self.bucket, self.prefix = split_s3_uri(uri)
        self.base = f"s3://{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")
        self.endpoint_url = environ.get("DURABLE_S3_ENDPOINT") or None
        self.region = environ.get("AWS_DEFAULT_REGION", "us-east-1")
        self._client: Any = None
        self._context: contextlib.AsyncExitStack | None = None

    async def __aenter__(self) -> S3Objects:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        stack = contextlib.AsyncExitStack()
        # an endpoint that stalls fails in seconds, not minutes
        config = AioConfig(connect_timeout=10, read_timeout=60, retries={"max_attempts": 3})
        with self._translated(f"connecting to {self._where}"):
            self._client = await stack.enter_async_context(
                get_session().create_client(
                    "s3", endpoint_url=self.endpoint_url, region_name=self.region, config=config
                )
            )
        self._context = stack
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._context is not None:
            with contextlib.suppress(Exception):  # closing a client that lost its endpoint
                await self._context.aclose()
            self._context = None

    @property
    def _where(self) -> str:
        return f"object storage {self.endpoint_url or 'AWS'}"

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    async def put(self, key: str, data: bytes) -> str:
        with self._translated(f"writing {self.uri(key)}"):
            await self._client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=data, ContentType="application/gzip"
            )
        return self.uri(key)

    async def sync(self) -> None:
        return None  # a put that returned is stored

    async def get(self, key: str) -> bytes:
        with self._translated(f"reading {self.uri(key)}"):
            response = await self._client.get_object(Bucket=self.bucket, Key=self._key(key))
            async with response["Body"] as body:
                data: bytes = await body.read()
        return data

    def _translated(self, what: str) -> contextlib.AbstractContextManager[None]:
        return _s3_errors(what, self.uri(""))


@contextlib.contextmanager
def _s3_errors(what: str, where: str) -> Iterator[None]:
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("NoSuchKey", "404", "NotFound"):
            raise ArchiveError(
                f"{what}: no such object",
                hint="was it moved or deleted? put it back from a backup",
                retryable=False,
            ) from None
        if code in ("NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise ArchiveError(
                f"{what}: {code}",
                hint=f"check the bucket of {where} and the AWS_* credentials",
                retryable=False,
            ) from None
        raise ArchiveError(f"{what}: {exc}") from None
    except NoCredentialsError:
        raise ArchiveError(
            f"{what}: no credentials",
            hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a profile)",
            retryable=False,
        ) from None
    except (BotoCoreError, OSError) as exc:
        raise ArchiveError(
            f"{what}: {exc}", hint="is DURABLE_S3_ENDPOINT right, and is the storage up?"
        ) from None
