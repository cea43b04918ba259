"""What the control plane and the edge must agree on without importing each other: the signed
token format and the basic-auth hashes tokens carry (``contracts.token_format``,
``contracts.basic_auth``). Imports nothing of ours but ``proto``."""
