"""The RL training loop shared by ``ivideogpt drqv2`` (model-free) and ``ivideogpt mbrl`` (MBPO).

One loop: act in the real env, store whole episodes in the real replay, update the agent every
``update_every_steps`` agent steps; with a world model also train it on its schedule, start imagined
rollouts on theirs and mix imagined transitions into each batch. Evaluation episodes (mean action,
fixed seeds, the same for every run) write ``curve.csv``; ``timing.json`` says where the time went.

Checkpoints are taken at episode ends (no env state to save: the next episode is reset with a seed derived
from the run seed and its index), written atomically into ``OUT/checkpoint/``: agent (networks, optimizers,
its generator), replays, world model with its optimizers, step counters and quantizer usage, the loop's
counters and schedule, and every random stream (process-global ones and the loop's own generators), so
``--resume`` continues the same run exactly, whenever the previous process was killed.
"""

from __future__ import annotations

import csv
import io
import json
import random
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from ..config import to_dict
from ..errors import CheckpointError, ConfigError, IVideoGPTError
from ..faults import fault_point
from ..fileio import atomic_dir, atomic_write_bytes, atomic_write_json, recover_interrupted
from ..rng import capture_rng, restore_rng
from .config import RLConfig
from .drqv2 import DrQV2Agent
from .replay import ReplayBuffer
from .wrappers import make_pixel_env

EVAL_SEED_BASE = 1_000_000  # evaluation episodes use seeds EVAL_SEED_BASE + i in every run (same start states)
DEMO_SEED_BASE = 2_000_000
TIMERS = ("env", "act", "agent_update", "wm_transformer", "wm_tokenizer", "rollouts", "eval", "demos", "checkpoint")
CURVE_FIELDS = ("env_steps", "success_rate", "return")


class Timers:
    """Wall-clock and CPU seconds per section. CPU time is what to compare on a shared machine: other
    processes on the same core stretch wall time but not this process's CPU time."""

    def __init__(self):
        self.seconds = {k: 0.0 for k in TIMERS}
        self.cpu_seconds = {k: 0.0 for k in TIMERS}

    @contextmanager
    def __call__(self, name: str):
        t, c = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - t
            self.cpu_seconds[name] += time.process_time() - c


class RLTrainer:
    def __init__(self, cfg: RLConfig, env_name: str, out, *, seed: int = 0, world_model: str | None = None,
                 resume: bool = False, progress: bool = True):
        self.cfg, self.env_name, self.out, self.seed = cfg, env_name, Path(out), int(seed)
        self.world_model_spec, self.progress = world_model, progress
        # The process-global streams too are a function of the seed (the loop draws from its own generators, but
        # an environment or library may use them), and are checkpointed with the rest.
        np.random.seed(self.seed % 2**32)
        random.seed(self.seed)
        r = cfg.run
        self.env = make_pixel_env(env_name, action_repeat=r.action_repeat, frame_stack=r.frame_stack,
                                  episode_length=r.episode_length, success_bonus=r.success_bonus,
                                  env_kwargs=r.env_kwargs)
        self.eval_env = make_pixel_env(env_name, action_repeat=r.action_repeat, frame_stack=r.frame_stack,
                                       episode_length=r.episode_length, success_bonus=r.success_bonus,
                                       env_kwargs=r.env_kwargs)
        space = self.env.action_space
        self.action_dim = int(np.prod(space.shape))
        frame_shape = tuple(self.env.observation_space.shape[1:])
        if frame_shape[0] != frame_shape[1]:
            raise ConfigError(f"environment '{env_name}': expected square frames, got {frame_shape}")
        self.agent = DrQV2Agent(cfg.agent, r.frame_stack, frame_shape[0], self.action_dim, seed=self.seed)
        buf = dict(frame_stack=r.frame_stack, nstep=cfg.agent.nstep, discount=cfg.agent.discount)
        self.replay = ReplayBuffer(r.replay_capacity, frame_shape, self.action_dim, **buf)
        self.rng = np.random.default_rng([self.seed, 1])  # replay sampling
        self.wm = self.learner = self.imagined = None
        if world_model is not None:
            from .mbpo import WorldModelLearner, build_world_model

            m = cfg.mbpo
            self.wm = build_world_model(world_model, action_dim=self.action_dim, action_low=space.low,
                                        action_high=space.high, resolution=frame_shape[0],
                                        min_frames=max(m.clip_len, r.frame_stack + m.horizon), cfg=m, seed=self.seed)
            self.learner = WorldModelLearner(self.wm, m, self.seed)
            self.imagined = ReplayBuffer(m.imagined_capacity, frame_shape, self.action_dim, **buf)
            self.wm_rng = np.random.default_rng([self.seed, 2])  # world-model clips and rollout starts
            self.wm_generator = torch.Generator().manual_seed(self.seed * 7919 + 3)  # token sampling
        self.timers = Timers()
        self.state = {"env_steps": 0, "agent_steps": 0, "episodes": 0, "updates": 0, "wm_started": False,
                      "next_eval": 0, "next_save": r.save_every_env_steps, "curve": [], "train_returns": [],
                      "demos_done": False, "rollouts": 0, "last_logs": {}}
        self.out.mkdir(parents=True, exist_ok=True)
        self._write_run_info()
        if resume:
            self.load()

    # --------------------------------------------------------------------------------------- setup
    def _write_run_info(self) -> None:
        info = {"env": self.env_name, "seed": self.seed, "world_model": self.world_model_spec,
                "config": to_dict(self.cfg)}
        path = self.out / "run.json"
        if path.exists():
            old = json.loads(path.read_text())
            if {k: old.get(k) for k in info} != info:
                raise ConfigError(f"{path}: this directory holds a different run (env/seed/world model/config); "
                                  "use a new --out")
        atomic_write_json(path, info)

    def _demos(self) -> None:
        """Seed the replay with ``run.demos`` scripted-expert episodes (kept whether they succeed or not)."""
        from ..envs import make_expert

        r = self.cfg.run
        if r.demos <= 0:
            return
        try:
            expert = make_expert(self.env_name, noise=r.demo_noise, seed=self.seed)
        except IVideoGPTError as e:  # an env without a scripted expert: say so, do not fail the run
            print(f"note: no demonstrations ({e})")
            return
        for i in range(r.demos):
            expert.reset(self.seed * 1000 + i)
            obs, info = self.env.reset(seed=DEMO_SEED_BASE + self.seed * 1000 + i)
            frames, actions, rewards = [obs[-1]], [], []
            done = False
            while not done:
                a = expert.act(obs[-1], info)
                obs, rew, term, trunc, info = self.env.step(a)
                frames.append(obs[-1])
                actions.append(a)
                rewards.append(rew)
                done = term or trunc
            self.replay.add_episode(np.stack(frames), np.stack(actions), np.array(rewards), terminal=term)

    # ---------------------------------------------------------------------------------------- eval
    def evaluate(self, final: bool = False) -> dict:
        """Mean-action episodes on fixed seeds -> a curve row. ``final``: the extra point where a run stops
        between scheduled evaluations (dropped on --resume, so the continued curve equals an unbroken run's)."""
        r = self.cfg.run
        returns, successes = [], []
        for i in range(r.eval_episodes):
            obs, _ = self.eval_env.reset(seed=EVAL_SEED_BASE + i)
            total, success, done = 0.0, False, False
            while not done:
                a = self.agent.act(obs[None], self.state["agent_steps"], eval_mode=True)[0].numpy()
                obs, rew, term, trunc, info = self.eval_env.step(a)
                total += rew
                success = success or bool(info.get("success", False))
                done = term or trunc
            returns.append(total)
            successes.append(success)
        row = {"env_steps": self.state["env_steps"], "success_rate": float(np.mean(successes)),
               "return": float(np.mean(returns))}
        if final:
            row["final"] = True
        self.state["curve"].append(row)
        self._write_curve()
        return row

    def _write_curve(self) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=CURVE_FIELDS, lineterminator="\n")
        w.writeheader()
        for row in self.state["curve"]:
            w.writerow({"env_steps": row["env_steps"], "success_rate": f"{row['success_rate']:.4f}",
                        "return": f"{row['return']:.4f}"})
        atomic_write_bytes(self.out / "curve.csv", buf.getvalue().encode())

    # ----------------------------------------------------------------------------------- world model
    def _wm_schedule(self, prev_env_steps: int) -> None:
        """Train the world model / start rollouts for the env steps just taken (prev -> now)."""
        m, st = self.cfg.mbpo, self.state
        now = st["env_steps"]
        crossed = lambda every: now // every - prev_env_steps // every  # noqa: E731
        clip = lambda: self.replay.sample_clips(m.batch_size, m.clip_len, self.wm_rng)  # noqa: E731
        if not st["wm_started"]:
            st["wm_started"] = True
            for _ in range(m.init_train_steps):
                with self.timers("wm_tokenizer"):
                    self.learner.train_tokenizer(clip())
                with self.timers("wm_transformer"):
                    st["last_logs"].update(self.learner.train_transformer(clip()))
            self._rollouts(m.initial_rollout_batch)
            return
        for _ in range(crossed(m.tokenizer_every_env_steps)):
            with self.timers("wm_tokenizer"):
                self.learner.train_tokenizer(clip())
        for _ in range(crossed(m.transformer_every_env_steps)):
            with self.timers("wm_transformer"):
                st["last_logs"].update(self.learner.train_transformer(clip()))
        if crossed(m.rollout_every_env_steps):
            self._rollouts(m.rollout_batch)

    def _rollouts(self, n: int) -> None:
        from .mbpo import add_rollouts, imagine

        m = self.cfg.mbpo
        step = self.state["agent_steps"]
        policy = lambda obs: self.agent.act(obs, step, eval_mode=False).numpy()  # noqa: E731
        with self.timers("rollouts"):
            chunk = max(m.rollout_batch, 1)
            for lo in range(0, n, chunk):
                b = min(chunk, n - lo)
                starts = self.replay.valid_starts()
                stacks = self.replay.stack(starts[self.wm_rng.integers(len(starts), size=b)])
                frames, actions, rewards = imagine(self.wm, policy, stacks, m.horizon, generator=self.wm_generator,
                                                   temperature=m.temperature, top_k=m.top_k)
                add_rollouts(self.imagined, stacks, frames, actions, rewards)
                self.state["rollouts"] += b

    # ----------------------------------------------------------------------------------------- train
    def train(self, total_env_steps: int) -> dict:
        from tqdm import tqdm

        from .mbpo import mixed_batch

        cfg, r, st = self.cfg, self.cfg.run, self.state
        if not st["demos_done"]:
            with self.timers("demos"):
                self._demos()
            st["demos_done"] = True
        bar = tqdm(total=total_env_steps, initial=min(st["env_steps"], total_env_steps), unit="env step",
                   disable=not self.progress, dynamic_ncols=True,
                   desc="mbpo" if self.wm is not None else "drqv2")
        t_start = time.perf_counter()
        while st["env_steps"] < total_env_steps:
            # one episode
            with self.timers("env"):
                obs, info = self.env.reset(seed=self.seed * 100_003 + st["episodes"])
            frames, actions, rewards = [obs[-1]], [], []
            done = term = False
            while not done:
                fault_point("rl.step")
                if st["env_steps"] >= st["next_eval"]:
                    with self.timers("eval"):
                        row = self.evaluate()
                    st["next_eval"] += r.eval_every_env_steps
                    bar.set_postfix(success=row["success_rate"], ret=f"{row['return']:.2f}")
                with self.timers("act"):
                    a = self.agent.act(obs[None], st["agent_steps"], eval_mode=False)[0].numpy()
                with self.timers("env"):
                    obs, rew, term, trunc, info = self.env.step(a)
                frames.append(obs[-1])
                actions.append(a)
                rewards.append(rew)
                done = term or trunc
                prev = st["env_steps"]
                st["agent_steps"] += 1
                st["env_steps"] += r.action_repeat
                bar.update(r.action_repeat)
                if st["agent_steps"] >= r.num_seed_steps and len(self.replay.valid_starts()) > 0:
                    if self.wm is not None:
                        self._wm_schedule(prev)
                    if st["agent_steps"] % cfg.agent.update_every_steps == 0:
                        for _ in range(cfg.agent.updates_per_step):
                            with self.timers("agent_update"):
                                batch = mixed_batch(self.replay, self.imagined, cfg.agent.batch_size,
                                                    cfg.mbpo.real_ratio if self.wm is not None else 1.0, self.rng)
                                st["last_logs"].update(self.agent.update(batch, st["agent_steps"]))
                            st["updates"] += 1
            self.replay.add_episode(np.stack(frames), np.stack(actions), np.array(rewards), terminal=term)
            st["episodes"] += 1
            st["train_returns"].append(float(np.sum(rewards)))
            if st["env_steps"] >= st["next_save"] or st["env_steps"] >= total_env_steps:
                if st["env_steps"] >= total_env_steps and (not st["curve"] or
                                                           st["curve"][-1]["env_steps"] != st["env_steps"]):
                    with self.timers("eval"):
                        self.evaluate(final=True)  # the last point of the curve
                self.save()
                while st["next_save"] <= st["env_steps"]:
                    st["next_save"] += r.save_every_env_steps
        bar.close()
        self.write_timing(time.perf_counter() - t_start)
        self.plot()
        return {"env_steps": st["env_steps"], "episodes": st["episodes"], "updates": st["updates"],
                "curve": {k: st["curve"][-1][k] for k in CURVE_FIELDS} if st["curve"] else None}

    # ------------------------------------------------------------------------------------- reports
    def write_timing(self, wall: float) -> dict:
        secs, cpu = self.timers.seconds, self.timers.cpu_seconds
        steps = max(self.state["env_steps"], 1)
        total, total_cpu = sum(secs.values()), sum(cpu.values())
        table = {k: {"seconds": round(v, 3), "cpu_seconds": round(cpu[k], 3),
                     "cpu_ms_per_env_step": round(1000 * cpu[k] / steps, 3),
                     "cpu_fraction": round(cpu[k] / total_cpu, 4) if total_cpu else 0.0} for k, v in secs.items()}
        out = {"env_steps": self.state["env_steps"], "timed_seconds": round(total, 3),
               "timed_cpu_seconds": round(total_cpu, 3), "wall_seconds_this_session": round(wall, 3),
               "sections": table, "note": "summed over the whole run (across --resume sessions); cpu_* is this "
                                          "process's CPU time, which other jobs on the same core do not inflate"}
        atomic_write_json(self.out / "timing.json", out)
        return out

    def plot(self) -> None:
        from .plot import plot_curves

        label = "MBPO" if self.wm is not None else "DrQ-v2"
        plot_curves({f"{label} seed {self.seed}": self.out / "curve.csv"}, self.out / "curve.png",
                    title=f"{label} on {self.env_name}")

    # --------------------------------------------------------------------------------- checkpoints
    def save(self) -> None:
        with self.timers("checkpoint"):
            ck = self.out / "checkpoint"
            with atomic_dir(ck) as tmp:
                state = {"agent": self.agent.state_dict(), "rng": capture_rng()}
                if self.wm is not None:
                    state["learner"] = self.learner.state_dict()
                    state["wm_generator"] = self.wm_generator.get_state()
                    self.wm.write_into(tmp / "world_model")
                torch.save(state, tmp / "agent.pt")
                fault_point("checkpoint.partial")
                np.savez(tmp / "replay.npz", **self.replay.state_dict())
                if self.imagined is not None:
                    np.savez(tmp / "imagined.npz", **self.imagined.state_dict())
                meta = {**self.state, "rng": self.rng.bit_generator.state, "timers": self.timers.seconds,
                        "cpu_timers": self.timers.cpu_seconds}
                if self.wm is not None:
                    meta["wm_rng"] = self.wm_rng.bit_generator.state
                (tmp / "state.json").write_text(json.dumps(meta) + "\n")

    def load(self) -> None:
        from ..checkpoint import load_pretrained_dir, load_state_dict_strict

        ck = self.out / "checkpoint"
        recover_interrupted(ck)  # a run killed while replacing its checkpoint left the previous one aside
        if not ck.exists():
            print(f"note: --resume: {ck} does not exist yet (killed before its first checkpoint): starting afresh")
            return
        if not (ck / "state.json").is_file():
            raise CheckpointError(f"--resume: {ck} holds no checkpoint (state.json missing)")
        meta = json.loads((ck / "state.json").read_text())
        state = torch.load(ck / "agent.pt", map_location="cpu", weights_only=True)
        self.agent.load_state_dict(state["agent"])
        if "rng" in state:
            restore_rng(state["rng"])
        else:  # written before the other process-global streams were saved
            torch.set_rng_state(state["torch_rng"])
        with np.load(ck / "replay.npz", allow_pickle=False) as z:
            self.replay.load_state_dict(dict(z))
        if self.wm is not None:
            if not (ck / "world_model").is_dir():
                raise CheckpointError(f"--resume: {ck} was written by a model-free run (no world_model/)")
            for part in ("tokenizer", "transformer"):
                _, sd = load_pretrained_dir(ck / "world_model" / part, part)
                load_state_dict_strict(getattr(self.wm, part), sd, str(ck / "world_model" / part))
            self.learner.load_state_dict(state["learner"])
            self.wm_generator.set_state(state["wm_generator"])
            with np.load(ck / "imagined.npz", allow_pickle=False) as z:
                self.imagined.load_state_dict(dict(z))
            self.wm_rng.bit_generator.state = meta.pop("wm_rng")
        self.rng.bit_generator.state = meta.pop("rng")
        self.timers.seconds.update(meta.pop("timers"))
        self.timers.cpu_seconds.update(meta.pop("cpu_timers"))
        self.state.update(meta)
        self.state["curve"] = [row for row in self.state["curve"] if not row.get("final")]
        self._write_curve()  # rows written after the checkpoint are dropped: the resumed run rewrites them
