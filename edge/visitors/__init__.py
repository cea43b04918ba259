"""The visitor side of the edge: the HTTP/1.1, HTTP/2 and TCP shells, the exchange with
the agent, forwarded headers, the edge's own pages and the visitor policy."""
