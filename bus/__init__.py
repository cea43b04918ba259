"""The bus between the control plane and the edges: routing, domain, revocation and
certificate events go out on pub/sub channels; what edges report (sessions, tunnels) comes
back on streams. ``bus.base`` is the interface, ``bus.events`` the messages."""
