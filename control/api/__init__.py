"""The REST API under /v1: one RouteTableDef per resource."""
