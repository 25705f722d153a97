"""``ivideogpt play``: drive a world model from the keyboard in a browser (a local web server and one page)."""

from __future__ import annotations

HELP = "play a world model in the browser (keyboard in, predicted frames out, the simulator beside it)"
DEMO_MODEL = "demo/world_model"


def add_arguments(p):
    p.add_argument("--model", default=None,
                   help=f"world model directory or transformer run directory (default: {DEMO_MODEL}, made by "
                        "`make demo`)")
    p.add_argument("--data", default=None,
                   help="dataset the context frames come from (default: the one the model was trained on, from "
                        "its run.json)")
    p.add_argument("--env", default=None,
                   help="simulator of the ground-truth panel (default: the one the dataset was collected with; "
                        "'none' turns the panel off)")
    p.add_argument("--context", type=int, default=None,
                   help="real frames a session starts from (default: 2, or the model's context frames if more)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (0: any free one)")
    p.add_argument("--max-sessions", type=int, default=4, help="browser tabs played at once")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--no-browser", action="store_true", help="print the URL without opening a browser")


def run(args) -> int:
    import json
    import os
    import sys
    import threading
    import webbrowser
    from pathlib import Path

    import uvicorn

    from ..errors import ConfigError
    from ..serve.app import bind, create_app, url_of
    from ..serve.sessions import Playground
    from ..world_model import WorldModel

    model = args.model
    if model is None:
        if not Path(DEMO_MODEL).exists():
            print(f"error: no --model given and no {DEMO_MODEL} here: run `make demo` (~25 min on 2 CPU cores) "
                  "or pass --model RUN_OR_MODEL_DIR --data DATASET", file=sys.stderr)
            return 2
        model = DEMO_MODEL
    data = args.data
    if data is None:
        run_json = Path(model) / "run.json"
        trained_on = json.loads(run_json.read_text()).get("data") if run_json.is_file() else None
        if not trained_on:
            raise ConfigError(f"--data: {model} does not say which dataset it was trained on; pass --data DIR")
        data = trained_on[0]
    wm = WorldModel.from_pretrained(model)
    pg = Playground(wm, data, context=args.context, max_sessions=args.max_sessions, env=args.env,
                    threads=args.threads)
    try:
        sock = bind(args.host, args.port)
    except OSError as e:
        raise ConfigError(f"--host {args.host} --port {args.port}: cannot listen there ({e}); try --port 0") from None
    url = url_of(sock)
    print(f"ivideogpt play: {model} on {pg.data.path} ({len(pg.episodes)} {pg.split} episodes) at {url}  "
          "(Ctrl-C to stop)", flush=True)
    # Only where a graphical browser can open: in a terminal-only session webbrowser would start a text browser.
    if not args.no_browser and (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                                or sys.platform in ("darwin", "win32")):
        threading.Timer(1.0, webbrowser.open, (url,)).start()
    server = uvicorn.Server(uvicorn.Config(create_app(pg), log_level="warning", ws_max_size=1 << 20))
    server.run(sockets=[sock])
    return 0
