"""The data path compiled with mypyc, used only while it matches its sources.

The edge and the agent spend nearly all of their CPU per request in the modules listed here:
the HTTP/1 parser, the frame codec and multiplexer, the link session, the visitors. mypyc (the
compiler that comes with mypy) turns those typed modules into C extensions; the edge then
executes about 45% fewer instructions per request (``python -m bench instructions``).

Compiling is optional and changes no behaviour: the sources stay the program, the test suite
runs against both forms, and without a C compiler, or with ``BURROW_COMPILED=0``, the same
modules simply run as Python.

``python -m compiled`` builds ``HOT_MODULES`` into ``compiled/lib`` with a manifest that records
each source's SHA-256 and the interpreter's extension suffix, and writes ``burrow-compiled.pth``
into site-packages. At every interpreter start that file installs ``finder.CompiledModules``,
which serves the extensions only when every source still matches the manifest. mypyc builds the
group as one shared library whose modules call each other directly, so one stale module would
mix two versions of the same classes: any mismatch and the whole group runs as Python.
"""

from __future__ import annotations

# Every module here must type-check strictly enough for mypyc, which enforces annotations at
# run time (a float where ``int`` is declared raises TypeError). A class that code outside the
# group subclasses carries ``@mypyc_attr(allow_interpreted_subclasses=True)``.
HOT_MODULES: tuple[str, ...] = (
    "proto.frames",
    "proto.receive",
    "proto.mux",
    "relay.session",
    "relay.stream",
    "edge.http1.events",
    "edge.http1.framing",
    "edge.http1.native",
    "edge.http1.httptools_impl",
    "edge.visitors.forwarding",
    "edge.visitors.exchange",
    "edge.context",
    "edge.pipeline",
    "edge.visitors.http_visitor",
    "edge.visitors.h2_fields",
    "edge.visitors.h2_visitor",
    "edge.link.agent_session",
    "edge.visitors.request_ids",
    "edge.admin.metrics",
    "edge.visitors.visitor_policy",
    "edge.admin.access_log",
    "edge.config",
    "agent.tunnels",
    "agent.link",
)
