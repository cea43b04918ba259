"""What an operator sees of an edge: the admin listener (/healthz, /readyz, /metrics), the
metrics, the access log and the log format."""
