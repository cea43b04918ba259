"""asyncio shells over the sans-IO protocol, shared by the edge and the agent.

``LinkSession`` moves bytes between one agent link socket and a ``proto.mux.Multiplexer``;
``SocketRelay`` pipes one TCP socket to one tunnel stream with backpressure both ways.
"""
