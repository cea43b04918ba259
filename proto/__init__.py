"""The agent<->edge wire protocol: frame codec, control messages, stream multiplexer.

Imports nothing else from the project and no asyncio.
"""
