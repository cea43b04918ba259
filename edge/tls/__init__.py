"""TLS at the edge: reading the ClientHello that decides where a connection goes."""
