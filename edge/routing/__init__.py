"""Which tunnel serves a host or port: the route table and the names control reserves."""
