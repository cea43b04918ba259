"""Reading the edge's admin listener as Prometheus and a load balancer would."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from edge.server import Edge


@dataclass
class AdminResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()


async def admin_request(port: int, raw: bytes, *, timeout: float = 5.0) -> AdminResponse:
    """Send ``raw`` and read the answer until the listener closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        data = await asyncio.wait_for(reader.read(-1), timeout)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return AdminResponse(int(status_line.split(" ")[1]), headers, body)


async def admin_get(
    port: int, path: str, headers: Iterable[tuple[str, str]] = (), method: str = "GET"
) -> AdminResponse:
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers)
    raw = f"{method} {path} HTTP/1.1\r\nhost: admin\r\n{lines}\r\n".encode()
    return await admin_request(port, raw)


class Scrape:
    """One scrape of /metrics: samples by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        self.families: dict[str, str] = {}  # family name -> type
        for family in text_string_to_metric_families(text):
            self.families[family.name] = family.type
            for s in family.samples:
                self.samples[(s.name, frozenset(s.labels.items()))] = s.value

    @property
    def names(self) -> set[str]:
        return {name for name, _ in self.samples}

    def value(self, name: str, **labels: str) -> float:
        """The sample with exactly these labels (``pid`` ignored); KeyError if absent."""
        for (n, key), v in self.samples.items():
            if n == name and {k: x for k, x in key if k != "pid"} == labels:
                return v
        raise KeyError(f"{name}{labels} is not in the scrape:\n{self.text}")

    def series(self, name: str) -> dict[frozenset[tuple[str, str]], float]:
        return {key: v for (n, key), v in self.samples.items() if n == name}


async def scrape(port: int) -> Scrape:
    r = await admin_get(port, "/metrics")
    assert r.status == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return Scrape(r.text)


async def scrape_edge(edge: Edge) -> Scrape:
    assert edge.config.admin_port
    return await scrape(edge.config.admin_port)
