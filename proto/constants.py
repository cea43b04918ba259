"""Names both ends of an agent link must agree on, besides the frames themselves."""

from __future__ import annotations

from typing import Final

# The ALPN protocol an agent offers on a TLS link, so one port can carry agents and visitors:
# the edge's TLS listener hands a connection that negotiated it to an agent session.
AGENT_ALPN: Final = "burrow/1"
# The request path of an agent link carried in WebSocket messages (for networks that pass
# only HTTPS); the edge's HTTP listeners take an upgrade to it as an agent, not a visitor.
LINK_PATH: Final = "/_burrow/link"
LINK_PATH_BYTES: Final = b"/_burrow/link"
