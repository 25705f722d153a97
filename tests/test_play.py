"""``ivideogpt play``: the session protocol, the server (what it serves, to whom), and the page in a real headless
Chromium: keys in, frames out, equal to ``WorldModel.rollout`` with the same actions and seed, pixel for pixel.

The world model is the micro one (32x32, max_steps 4, random weights) on a small 32x32 pusher dataset, so a
session goes past max_steps (re-anchoring) within a few key presses.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

import conftest
from ivideogpt.serve.sessions import Playground, decode_frame

RES = 32
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from ivideogpt.commands.collect import collect

    return collect("pusher", tmp_path_factory.mktemp("play") / "pusher32", episodes=4, steps=8, size=RES,
                   progress=False)


@pytest.fixture(scope="module")
def wm():
    return conftest.micro_world_model(res=RES, context_frames=1, max_steps=4, action_dim=2)


def ask(session, **msg):
    return session.handle(json.dumps(msg))


def expected_frames(wm, pg, reply, actions):
    """What WorldModel.rollout gives for this session's context, seed and actions."""
    ctx = np.stack([decode_frame(f, RES) for f in reply["frames"]])
    ca = pg.data.episode(reply["episode"])["actions"][: len(ctx) - wm.context_frames]
    frames, rewards = wm.rollout(ctx[None], np.asarray(actions, np.float32)[None], context_actions=ca[None],
                                 seed=reply["seed"])
    return frames[0], rewards[0]


def test_sessions_step_like_rollout_share_weights_and_survive_bad_messages(wm, data):
    from ivideogpt.envs import make

    pg = Playground(wm, data, max_sessions=2)
    a, b = pg.open(), pg.open()
    with pytest.raises(ValueError, match="at most 2"):
        pg.open()
    ra, rb = ask(a, type="start", episode=1, seed=5), ask(b, type="start", episode=2, seed=9)
    assert ra["type"] == "context" and len(ra["frames"]) == pg.context == 2
    acts = np.random.default_rng(0).uniform(-1, 1, (3 * wm.max_steps, 2)).round(3).tolist()
    got_a, got_b = [], []
    for i, act in enumerate(acts):  # interleaved: each session keeps its own rollout in the shared model
        got_a.append(ask(a, type="step", action=act))
        got_b.append(ask(b, type="step", action=acts[-1 - i]))
        if i == 2:
            for bad in ("{oops", "[1, 2]", '{"type": "step", "action": [1.0]}', '{"type": "step", "action": [NaN, 0]}',
                        '{"type": "step", "action": [null, 0]}', '{"type": "step", "action": "left"}',
                        '{"type": "fly"}', '{"type": "start", "episode": 99}', "x" * 70000):
                reply = a.handle(bad)
                assert reply["type"] == "error" and reply["message"], bad
    want_a, rew_a = expected_frames(wm, pg, ra, acts)
    want_b, _ = expected_frames(wm, pg, rb, acts[::-1])
    np.testing.assert_array_equal(np.stack([decode_frame(r["frame"], RES) for r in got_a]), want_a)
    np.testing.assert_array_equal(np.stack([decode_frame(r["frame"], RES) for r in got_b]), want_b)
    np.testing.assert_allclose([r["reward"] for r in got_a], rew_a, rtol=1e-6)
    assert [r["step"] for r in got_a] == list(range(1, len(acts) + 1))

    # Ground truth: the simulator restored at the context's last frame, then driven by the same actions.
    env = make("pusher", size=RES, max_episode_steps=7)
    from ivideogpt.commands.collect import episode_seeds

    env.reset(seed=episode_seeds(0, 1)[0])
    env.step(pg.data.episode(1)["actions"][0])
    truth = [env.step(np.asarray(act, np.float32))[0] for act in acts]
    np.testing.assert_array_equal(np.stack([decode_frame(r["truth"], RES) for r in got_a]), np.stack(truth))
    np.testing.assert_array_equal(decode_frame(ra["truth"], RES), pg.data.frames(1, 1, 2)[0])

    # reset replays the same context and seed; settings apply from the next step; export writes a video.
    ask(a, type="reset")
    assert ask(a, type="step", action=acts[0])["frame"] == got_a[0]["frame"]
    assert ask(a, type="settings", temperature=0.5, greedy=True)["temperature"] == 0.0
    assert ask(a, type="settings", temperature=-1)["type"] == "error"
    gif = ask(a, type="export", format="gif")
    import base64

    import imageio.v3 as iio

    video = iio.imread(base64.b64decode(gif["data"]), extension=".gif", index=None)
    assert gif["frames"] == 2 and video.shape[0] == 2 and video.shape[2] == 2 * video.shape[1]  # dream | truth
    pg.close(a)
    pg.open()  # a slot is free again


def test_ground_truth_is_refused_when_the_simulator_does_not_reproduce_the_data(wm, data, tmp_path):
    from ivideogpt.data.episodes import EpisodeDataset
    from ivideogpt.serve.ground_truth import GroundTruth

    ds = EpisodeDataset(data)
    assert GroundTruth(ds, 0, 2).env is not None
    assert "turned off" in GroundTruth(ds, 0, 2, env="none").reason
    # A dataset whose recorded seed is not the one its episodes were collected with: no fake truth.
    bad = tmp_path / "bad"
    shutil.copytree(data, bad)
    meta = json.loads((bad / "meta.json").read_text())
    meta["extra"]["seed"] = 1234
    (bad / "meta.json").write_text(json.dumps(meta))
    gt = GroundTruth(EpisodeDataset(bad), 0, 2)
    assert gt.env is None and "does not reproduce its frame 0" in gt.reason
    meta["extra"] = {"source_videos": "elsewhere"}  # what an imported dataset records
    (bad / "meta.json").write_text(json.dumps(meta))
    assert "does not record the simulator" in GroundTruth(EpisodeDataset(bad), 0, 2).reason


@pytest.fixture()
def server(wm, data):
    from ivideogpt.serve.app import start_in_thread

    url, stop = start_in_thread(Playground(wm, data, max_sessions=3, threads=1))
    yield url
    stop()


def test_server_serves_only_its_page_and_same_origin_websockets(server):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    assert server.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(server) as r:
        assert b"ivideogpt play" in r.read() and "default-src 'none'" in r.headers["Content-Security-Policy"]
    for path in ("page.html", "serve/page.html", "../pyproject.toml", "%2e%2e/pyproject.toml", "static/x"):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(server + path)
        assert e.value.code == 404, path
    ws_url = server.replace("http", "ws") + "ws"
    with connect(ws_url) as ws:
        info = json.loads(ws.recv())
        assert info["type"] == "info" and info["action_dim"] == 2
        ws.send(json.dumps({"type": "start", "seed": 1}))
        assert json.loads(ws.recv())["type"] == "context"
        ws.send(b"\x00binary")
        assert "binary" in json.loads(ws.recv())["message"]
        ws.send(json.dumps({"type": "step", "action": [0.5, 0.5]}))
        assert json.loads(ws.recv())["step"] == 1
    with pytest.raises(InvalidStatus):
        connect(ws_url, origin="http://evil.example").close()


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.skipif(_chromium() is None or shutil.which("chromedriver") is None,
                    reason="needs Debian's chromium and chromium-driver (make setup installs them)")
def test_page_in_headless_chromium_plays_like_rollout(server, wm, data, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = _chromium()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(shutil.which("chromedriver")))
    try:
        driver.get(server + "?episode=2&seed=77")
        wait = WebDriverWait(driver, 20)
        wait.until(lambda d: d.execute_script("return window.play.ready"))
        received = lambda: driver.execute_script("return window.play.received.length")  # noqa: E731

        def settle(n_min):
            wait.until(lambda d: received() >= n_min)
            n = -1
            while n != received():  # no frame in flight any more
                n = received()
                time.sleep(0.4)
            return n

        body = driver.find_element(By.TAG_NAME, "body")
        chain = ActionChains(driver)
        chain.key_down(Keys.ARROW_RIGHT, body).pause(0.8).key_up(Keys.ARROW_RIGHT, body).perform()
        settle(2)  # held: repeats at the page's rate
        ActionChains(driver).key_down("s", body).pause(0.5).key_up("s", body).perform()
        for key in (Keys.ARROW_LEFT, "w", Keys.ARROW_UP):  # taps: one step each
            ActionChains(driver).send_keys_to_element(body, key).perform()
            time.sleep(0.15)
        n = settle(wm.max_steps + 2)  # past the KV cache: re-anchored
        # A malformed message is shown on the page and the session goes on.
        driver.execute_script("window.play.sendRaw('{oops')")
        wait.until(lambda d: "malformed" in d.find_element(By.ID, "error").text)
        ActionChains(driver).send_keys_to_element(body, "d").perform()
        n = settle(n + 1)
        state = driver.execute_script("const p = window.play; return {received: p.received, actions: p.actions, "
                                      "context: p.context, seed: p.seed, episode: p.episode, errors: p.errors};")
        assert state["seed"] == 77 and state["episode"] == 2 and len(state["errors"]) == 1
        frames = np.stack([decode_frame(f, RES) for f in state["received"]])
        acts = np.asarray(state["actions"], np.float32)
        assert acts.shape == (n, 2) and {tuple(a) for a in acts.tolist()} >= {(1.0, 0.0), (0.0, 1.0), (-1.0, 0.0)}
        ctx_last = decode_frame(state["context"][-1], RES)
        assert len({f.tobytes() for f in frames}) > 1 and not np.array_equal(frames[0], ctx_last)  # frames change
        want, _ = expected_frames(wm, Playground(wm, data), {"frames": state["context"], "episode": 2, "seed": 77},
                                  acts)
        np.testing.assert_array_equal(frames, want)
        # The ground-truth panel is shown (the simulator of this dataset restores); the step counter follows.
        assert driver.find_element(By.ID, "truth").is_displayed()
        assert driver.find_element(By.ID, "step").text == str(n)
        shot = tmp_path / "play.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
    finally:
        driver.quit()


def test_play_without_a_model_says_how_to_get_one(tmp_path, monkeypatch, capsys):
    from ivideogpt.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["play", "--no-browser"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "make demo" in err[0]


def test_latency_benchmark_measures_through_the_websocket(server):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "play_latency.py"
    spec = importlib.util.spec_from_file_location("bench_play_latency", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    r = bench.measure(server, 2, steps=2, warmup=1)
    assert r["sessions"] == 2 and r["steps_per_s"] > 0 and r["lat_median"] >= r["model_median"] > 0
