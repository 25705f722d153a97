"""The ASGI app of ``ivideogpt play``: the page at ``/`` and one WebSocket per tab at ``/ws``; nothing else.

Model work runs on one worker thread, off the event loop: steps of different tabs queue there (they share the
weights and the CPU anyway), the page stays served, and the simulators of the ground-truth panel (MuJoCo's GL
context belongs to the thread that made it) always run on the thread that built them.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from importlib.resources import files
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from .sessions import PlayError, Playground

# The page loads nothing from elsewhere and talks only to its own server.
CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; " \
      "connect-src 'self'; media-src blob:"


def create_app(playground: Playground) -> Starlette:
    page = files("ivideogpt.serve").joinpath("page.html").read_bytes()
    worker = ThreadPoolExecutor(1, thread_name_prefix="ivideogpt-play")

    async def index(request):
        return Response(page, media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-store", "Content-Security-Policy": CSP})

    async def play(ws: WebSocket):
        # Another web site open in the same browser must not drive (or read) this server: same origin only.
        origin = ws.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != ws.headers.get("host"):
            await ws.close(code=1008)
            return
        await ws.accept()
        loop = asyncio.get_running_loop()
        try:
            session = playground.open()
        except PlayError as e:
            await ws.send_text(json.dumps({"type": "error", "message": str(e), "fatal": True}))
            await ws.close(code=1013)
            return
        try:
            await ws.send_text(json.dumps(playground.info()))
            while True:
                msg = await ws.receive()
                if msg["type"] == "websocket.disconnect":
                    break
                text = msg.get("text")
                if text is None:
                    reply = {"type": "error", "message": "binary messages are not accepted: send JSON text"}
                else:
                    reply = await loop.run_in_executor(worker, session.handle, text)
                await ws.send_text(json.dumps(reply))
        except Exception:  # the tab went away mid-send: only this session ends
            pass
        finally:
            playground.close(session)

    app = Starlette(routes=[Route("/", index), WebSocketRoute("/ws", play)])
    app.state.worker = worker
    return app


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: a free one), so the URL is known before the server starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def start_in_thread(playground: Playground, host: str = "127.0.0.1", port: int = 0):
    """Serve in a background thread (tests, benchmarks): returns (url, stop)."""
    import time

    import uvicorn

    sock = bind(host, port)
    server = uvicorn.Server(uvicorn.Config(create_app(playground), log_level="warning", ws_max_size=1 << 20))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the play server did not start")
        time.sleep(0.02)

    def stop():
        server.should_exit = True
        thread.join(10)
        sock.close()

    return url_of(sock), stop
