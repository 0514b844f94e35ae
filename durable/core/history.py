"""Histories as files: the JSON-lines export format and its reader.

One line per event: the envelope (stream, seq, position, commit time), the event's tag
and schema ``version``, and its ``data``. Keeping the version on each line lets a later
durable upcast an old export exactly as it upcasts old rows in the database.

A file may hold several streams of any kind; :func:`check_streams` folds each with its
kind's fold before anything is imported.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

import msgspec

from durable.core.backfill import backfill_state
from durable.core.errors import MalformedEvent
from durable.core.events import (
    REGISTRY,
    EventRegistry,
    Recorded,
    backfill_event,
    schedule_event,
    stream_kind,
)
from durable.core.fold import fold

__all__ = [
    "ExportedEvent",
    "check_streams",
    "dump_line",
    "read_history_file",
    "read_history_lines",
]


class ExportedEvent(msgspec.Struct, kw_only=True):
    """One line of ``durable export``."""

    stream_id: str
    seq: int
    position: int
    recorded_at: datetime
    type: str
    version: int
    data: msgspec.Raw


_line_decoder = msgspec.json.Decoder(ExportedEvent)
_encoder = msgspec.json.Encoder()


def dump_line(recorded: Recorded, registry: EventRegistry = REGISTRY) -> bytes:
    tag, version, data = registry.encode(recorded.event)
    line = ExportedEvent(
        stream_id=recorded.stream_id,
        seq=recorded.seq,
        position=recorded.position,
        recorded_at=recorded.recorded_at,
        type=tag,
        version=version,
        data=msgspec.Raw(data),
    )
    return _encoder.encode(line) + b"\n"


def read_history_lines(
    lines: Iterable[bytes], *, source: str, registry: EventRegistry = REGISTRY
) -> Iterator[Recorded]:
    """Decode export lines; errors name ``source`` and the line number."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            item = _line_decoder.decode(line)
        except msgspec.ValidationError as exc:
            raise MalformedEvent(where, f"not an exported event: {exc}") from None
        except msgspec.DecodeError as exc:
            raise MalformedEvent(where, f"not valid JSON: {exc}") from None
        event = registry.decode(item.type, item.version, bytes(item.data), where=where)
        yield Recorded(
            stream_id=item.stream_id,
            seq=item.seq,
            position=item.position,
            recorded_at=item.recorded_at,
            event=event,
        )


def read_history_file(path: Path, registry: EventRegistry = REGISTRY) -> list[Recorded]:
    """Every event in an exported file, gzipped or not (an archive file is an export,
    gzipped); ``-`` is not handled here: callers pass lines."""
    try:
        with path.open("rb") as f:
            if f.read(2) == b"\x1f\x8b":  # the gzip magic
                f.seek(0)
                try:
                    lines = gzip.decompress(f.read()).splitlines()
                except (OSError, EOFError) as exc:
                    raise MalformedEvent(str(path), f"not a whole gzip file: {exc}") from None
                return list(read_history_lines(lines, source=str(path), registry=registry))
            f.seek(0)
            return list(read_history_lines(f, source=str(path), registry=registry))
    except FileNotFoundError:
        raise MalformedEvent(str(path), "no such file", hint="check the path") from None
    except IsADirectoryError:
        raise MalformedEvent(
            str(path), "is a directory", hint="give an exported .jsonl file"
        ) from None


def check_streams(records: Iterable[Recorded]) -> dict[str, list[Recorded]]:
    """``records`` by stream, in order, each stream checked by its kind's fold.

    A run's stream is folded (:func:`~durable.core.fold.fold`), a backfill's too
    (:func:`~durable.core.backfill.backfill_state`); a schedule's must hold only its own
    events. Raises :class:`MalformedEvent` or :class:`~durable.core.errors.InvalidTransition`
    for the first inconsistent stream, so an import can refuse before writing any of it.
    """
    streams: dict[str, list[Recorded]] = {}
    for r in records:
        streams.setdefault(r.stream_id, []).append(r)
    for stream_id, recs in streams.items():
        match stream_kind(stream_id):
            case "run":
                fold(recs)
            case "backfill":
                _check_seqs(stream_id, recs)
                backfill_state(
                    backfill_event(r.event, where=f"{stream_id} seq {r.seq}") for r in recs
                )
            case "schedule":
                _check_seqs(stream_id, recs)
                for r in recs:
                    schedule_event(r.event, where=f"{stream_id} seq {r.seq}")
    return streams


def _check_seqs(stream_id: str, records: list[Recorded]) -> None:
    for expected, r in enumerate(records, start=1):
        if r.seq != expected:
            raise MalformedEvent(
                f"{stream_id} seq {r.seq}",
                f"expected seq {expected}: a stream's events are numbered from 1, in order",
            )
