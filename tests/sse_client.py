"""A real SSE client that behaves like the browser's EventSource.

It parses the byte stream as the spec says (a line may arrive split across
network chunks; CR, LF and CRLF all end lines), remembers the last event id,
honours ``retry:``, and when the server ends a stream before ``done`` it
reconnects with ``Last-Event-ID``. A 204 answer means: stop.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import requests


@dataclass
class Event:
    id: int | None
    type: str
    data: dict[str, Any]


@dataclass
class Connection:
    """What one HTTP response carried."""

    status: int
    headers: dict[str, str]
    events: list[Event] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)


def _lines(chunks: Iterator[bytes]) -> Iterator[str]:
    """Split a byte stream into lines, keeping a partial line until its end arrives."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        while True:
            cut = min((i for i in (pending.find(b"\n"), pending.find(b"\r")) if i >= 0), default=-1)
            if cut < 0:
                break
            if pending[cut:cut + 1] == b"\r" and cut + 1 == len(pending):
                break  # a CR at the end of a chunk may be the first half of CRLF
            line, rest = pending[:cut], pending[cut + 1:]
            if pending[cut:cut + 2] == b"\r\n":
                rest = pending[cut + 2:]
            yield line.decode("utf-8")
            pending = rest


class EventSource:
    """``for event in EventSource(url).events(): ...`` until a ``done`` event."""

    def __init__(self, url: str, last_event_id: int | None = None, method: str = "GET",
                 body: Any = None, headers: dict[str, str] | None = None) -> None:
        self.url, self.method, self.body = url, method, body
        self.headers = headers or {}
        self.last_event_id = last_event_id
        self.retry = 3.0
        self.connections: list[Connection] = []

    def _connect(self) -> requests.Response:
        headers = {"Accept": "text/event-stream", **self.headers}
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = str(self.last_event_id)
        return requests.request(self.method, self.url, headers=headers, json=self.body, stream=True, timeout=60)

    def one_connection(self) -> Iterator[Event]:
        """Events of a single response (no reconnect)."""
        response = self._connect()
        conn = Connection(response.status_code, dict(response.headers))
        self.connections.append(conn)
        if response.status_code != 200:
            response.close()
            return
        kind, data, ident = "message", [], None
        try:
            for line in _lines(response.iter_content(chunk_size=None)):
                if line == "":
                    if data:
                        event = Event(ident, kind, json.loads("\n".join(data)))
                        conn.events.append(event)
                        yield event
                    kind, data, ident = "message", [], None
                    continue
                if line.startswith(":"):
                    conn.comments.append(line)
                    continue
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "event":
                    kind = value
                elif name == "data":
                    data.append(value)
                elif name == "id":
                    ident = int(value)
                    self.last_event_id = ident
                elif name == "retry" and value.isdigit():
                    self.retry = int(value) / 1000
        finally:
            response.close()

    def events(self, max_connections: int = 1000) -> Iterator[Event]:
        """All events until ``done``, reconnecting like EventSource does."""
        for _ in range(max_connections):
            try:
                for event in self.one_connection():
                    yield event
                    if event.type == "done":
                        return
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
                # The server went away mid-stream (a worker killed, a restart): retry, as browsers do.
                self.connections.append(Connection(0, {}))
                time.sleep(self.retry)
                continue
            if self.connections[-1].status == 204:
                return
            if self.connections[-1].status != 200:
                raise AssertionError(f"stream answered {self.connections[-1].status}")
            # After a POST, EventSource-style resumption is a GET of the job's events.
            if self.method == "POST":
                job = self.connections[0].headers["X-Job-Id"]  # the response may end before any event
                self.url = self.url.split("/api/")[0] + f"/api/jobs/{job}/events"
                self.method, self.body = "GET", None
            time.sleep(self.retry)
        raise AssertionError("no done event after many reconnections")
