"""The control plane: accounts, orgs, API keys, agent tokens, names, domains, live tunnels
and the admin API, served by ``burrowd control`` (and inside ``burrowd dev``)."""

__version__ = "0.1.0"
