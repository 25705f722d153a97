"""Steps/s and latency per key press of `ivideogpt play`, end to end through the WebSocket.

A client sends a step message (what the page sends on a key press) and waits for the frame; the time between is
the latency a player feels (JSON, the WebSocket, the server's queue, the world-model step, the ground-truth
simulator step and the frame encoding). Measured with 1 session, then with N concurrent sessions (tabs) that
share the model: aggregate steps/s and each session's latency. The server runs in this process on
`--threads` torch threads (clients are light threads beside it).

    .venv/bin/python benchmarks/play_latency.py --model demo/world_model [--threads 2 1] [--steps 60] \\
        [--sessions 1 4] [--screenshot docs/img/play.png]

Without --model: an untrained `tiny-cpu` world model with 2-D actions and rewards (the demo's architecture, so
the same speed) on a few freshly collected 64x64 pusher episodes. `--screenshot` also drives the page in headless
Chromium (selenium + Debian's chromium) for a few seconds and saves what it shows, with the page's own
key-to-frame latencies. The goal for smooth play is >= 20 steps/s with one session.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from ivideogpt.errors import IVideoGPTError
from ivideogpt.serve.app import start_in_thread
from ivideogpt.serve.sessions import Playground
from ivideogpt.world_model import WorldModel


def model_and_data(args, tmp: Path):
    if args.model:
        data = args.data
        if data is None:
            run_json = Path(args.model) / "run.json"
            data = json.loads(run_json.read_text())["data"][0] if run_json.is_file() else None
        if data is None:
            raise SystemExit("--data: the model does not name its dataset; pass --data DIR")
        return WorldModel.from_pretrained(args.model), data, args.model
    from ivideogpt.commands.collect import collect

    data = collect("pusher", tmp / "pusher", episodes=4, steps=32, size=64, progress=False)
    wm = WorldModel.from_preset("tiny-cpu", action_dim=2, use_reward=True).eval()
    return wm, data, "untrained tiny-cpu (2-D actions, rewards)"


def session(url: str, seed: int, steps: int, warmup: int, start: threading.Barrier, out: list):
    from websockets.sync.client import connect

    rng = np.random.default_rng(seed)
    with connect(url.replace("http", "ws") + "ws", max_size=None) as ws:
        info = json.loads(ws.recv())
        ws.send(json.dumps({"type": "start", "episode": info["episodes"][seed % len(info["episodes"])],
                            "seed": seed}))
        assert json.loads(ws.recv())["type"] == "context"
        lat, ms = [], []
        for i in range(warmup + steps):
            if i == warmup:
                start.wait()
                t_start = time.perf_counter()
            action = rng.uniform(info["action_min"], info["action_max"]).tolist() if info["action_dim"] else None
            t = time.perf_counter()
            ws.send(json.dumps({"type": "step", "action": action}))
            reply = json.loads(ws.recv())
            if reply["type"] != "frame":
                raise RuntimeError(f"server: {reply}")
            if i >= warmup:
                lat.append(time.perf_counter() - t)
                ms.append(reply["ms"])
        out.append({"latency": lat, "model_ms": ms, "wall": time.perf_counter() - t_start})


def measure(url: str, n: int, steps: int, warmup: int) -> dict:
    out: list = []
    barrier = threading.Barrier(n)
    threads = [threading.Thread(target=session, args=(url, 100 + i, steps, warmup, barrier, out)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if len(out) != n:
        raise RuntimeError("a session failed (see above)")
    lat = [x * 1e3 for o in out for x in o["latency"]]
    wall = max(o["wall"] for o in out)
    return {"sessions": n, "steps_per_s": n * steps / wall, "per_session": steps / wall,
            "lat_median": statistics.median(lat), "lat_p90": float(np.percentile(lat, 90)),
            "model_median": statistics.median(x for o in out for x in o["model_ms"])}


def screenshot(url: str, path: Path, seconds: float) -> list[float]:
    from selenium import webdriver
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1300,940"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(shutil.which("chromedriver")))
    try:
        driver.get(url + "?seed=0")
        WebDriverWait(driver, 60).until(lambda d: d.execute_script("return window.play.ready"))
        body = driver.find_element(By.TAG_NAME, "body")
        for key, share in ((Keys.ARROW_RIGHT, 0.4), (Keys.ARROW_DOWN, 0.3), (Keys.ARROW_LEFT, 0.3)):
            ActionChains(driver).key_down(key, body).pause(seconds * share).key_up(key, body).perform()
        time.sleep(1.0)
        path.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(path))
        return driver.execute_script("return window.play.latencies")
    finally:
        driver.quit()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="world model or run directory (default: an untrained tiny-cpu model)")
    p.add_argument("--data", help="dataset of contexts (default: the model's, from its run.json)")
    p.add_argument("--threads", type=int, nargs="+", default=[2, 1],
                   help="torch CPU threads, each measured in turn (on a loaded 2-core machine 1 can beat 2)")
    p.add_argument("--steps", type=int, default=60, help="timed steps per session")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--sessions", type=int, nargs="+", default=[1, 4])
    p.add_argument("--screenshot", type=Path, help="also drive the page in headless Chromium and save a PNG")
    p.add_argument("--drive-seconds", type=float, default=6.0)
    args = p.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            wm, data, name = model_and_data(args, Path(tmp))
            pg = Playground(wm, data, max_sessions=max(args.sessions) + 1)
            url, stop = start_in_thread(pg)
            try:
                print(f"model: {name}; contexts: {data} ({pg.context} real frames); max_steps {wm.max_steps} "
                      f"(re-anchored after); load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
                print("| torch threads | sessions | steps/s (all) | steps/s per session | latency per key press, "
                      "median / p90 (ms) | model step, median (ms) |")
                print("|---|---|---|---|---|---|")
                for threads in args.threads:
                    pg.threads = threads
                    for n in args.sessions:
                        r = measure(url, n, args.steps, args.warmup)
                        print(f"| {threads} | {n} | {r['steps_per_s']:.1f} | {r['per_session']:.1f} | "
                              f"{r['lat_median']:.1f} / {r['lat_p90']:.1f} | {r['model_median']:.1f} |", flush=True)
                print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
                if args.screenshot:
                    pg.threads = min(args.threads)
                    lat = screenshot(url, args.screenshot, args.drive_seconds)
                    if lat:
                        print(f"page (headless Chromium, keys held): {len(lat)} steps, key-to-frame latency median "
                              f"{statistics.median(lat):.1f} ms -> {args.screenshot}")
            finally:
                stop()
    except IVideoGPTError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
