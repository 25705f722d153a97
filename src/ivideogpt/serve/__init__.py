"""The browser playground (``ivideogpt play``): an ASGI app, one page, one WebSocket session per tab."""
