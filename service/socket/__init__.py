"""The socket role: Daphne holding WebSocket connections.

A message travels publish -> Redis -> fanout -> frames -> sink. The hub owns the
process's state (subscribers, fan-out, drain); the channel layer maps Channels' API onto
it; the consumer speaks the client protocol.
"""
