"""Why does a run not learn? `dreamerctl diagnose` looks inside its checkpoint with its own
replay.

    dreamerctl diagnose ~/logdir/dreamer_dmc_cartpole_balance/20261122-104306

Six reports, each on the run's latest checkpoint and the last steps of its replay (stream 0):

- values: the critic's V(s_t) against the discounted return the agent then collected, along the
  last complete episodes. A critic far below the real returns starves the actor of signal; one
  that does not rank good states above bad ones misleads it.
- policy: quantiles of the policy's mean and standard deviation (continuous actions) or its
  entropy (discrete) over the last replayed steps, and how many executed actions sat at a bound.
  A mean pinned at +-1 with a wide std is the saturated actor of RESULTS "Why DMC cartpole...".
- reward: the reward head on the posteriors of the last replayed steps (resets left out).
  Where the recorded reward is 0, its mean prediction divided by (1 - discount) is the "phantom"
  value that this residual alone adds to every live state: against a small real return it can
  make staying alive the goal (RESULTS "Flattened observations").
- continue: the continue head at the replay's last terminations (deaths, not time limits) and
  at the live steps. A death it gives P(continue) >= 0.5 is one that imagination does not see
  coming: the critic values the states before it as any other, and the actor cannot learn to
  avoid it (RESULTS "CartPole seed 4's dip": a cart driven off the track).
- model: open-loop accuracy of the world model. After `--context` posterior steps, the prior is
  rolled with the recorded actions; the decoded vector observation and the predicted reward are
  compared with the recorded ones after 1, 5 and `--horizon` steps (RMSE per vector dimension,
  reward MAE), next to the error of predicting "nothing changes" (the last context observation)
  and the error of decoding the posterior itself (the representation's precision).
- gradient: for continuous actions, d R_0 / d a_0 of the imagined lambda-return through the
  world model at replayed states, over `--samples` imagined futures each: the signal the
  "dynamics" actor gradient follows. A mean that is small against its spread is a noisy signal.

The CLI prints plain text (`format_report`); `--json` prints the report as one JSON object.
Runs on the CPU in seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from dreamerctl.agent.agent import Agent
from dreamerctl.agent.behavior import Behavior
from dreamerctl.agent.distributions import BoundedNormal
from dreamerctl.agent.maths import lambda_return
from dreamerctl.errors import RunError
from dreamerctl.replay.chunks import ChunkName, list_chunks, read_chunk
from dreamerctl.run import rundir
from dreamerctl.run.policy import Loaded, load_agent
from dreamerctl.spaces import TRAIN_KEYS, record_spaces


def replay_chunks(run: Path) -> list[ChunkName]:
    """Stream 0's readable chunk names, oldest first (what diagnose looks at)."""
    return [n for n in list_chunks(run / "replay") if n.stream == 0 and not n.bad]


def load_replay(run: Path, keys: dict[str, tuple[tuple[int, ...], str]],
                until: int | None = None) -> dict[str, np.ndarray]:
    """Stream 0 of the run's replay, oldest first: key -> (N, ...); with `until`, only its
    steps before that index (what the replay held when an earlier checkpoint was written)."""
    parts = []
    for name in replay_chunks(run):
        if until is not None and name.first >= until:
            continue
        part = read_chunk(name, keys)
        if part is None:
            continue
        if until is not None and name.end > until:
            part = {key: value[:until - name.first] for key, value in part.items()}
        parts.append(part)
    if not parts:
        raise RunError(f"no replay chunks in {run / 'replay'}")
    return {key: np.concatenate([part[key] for part in parts]) for key in keys}


def steps_seen(loaded: Loaded) -> int | None:
    """How many steps of stream 0 the replay held when this checkpoint was written: a kept
    snapshot is diagnosed on the data it had trained on, not on what the run collected after
    it. None for checkpoints older than the replay's counters."""
    added = loaded.replay_state.get("added")
    return None if added is None else int(added) // loaded.config.env.num_envs


def rounded(x: npt.ArrayLike, digits: int = 3) -> Any:
    """A (nested) list of float64-rounded numbers, for printing and JSON."""
    return np.round(np.asarray(x, dtype=np.float64), digits).tolist()


def significant(x: npt.ArrayLike, digits: int = 3) -> list[float]:
    """Numbers rounded to `digits` significant digits: values of 0.03 and of 900 both show."""
    return [float(f"{v:.{digits}g}") for v in np.asarray(x, dtype=np.float64).ravel()]


def window(data: dict[str, np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
    return {key: value[index] for key, value in data.items()}


def episodes(data: dict[str, np.ndarray]) -> list[tuple[int, int]]:
    """[first, end) of every complete episode (from an is_first to its is_last)."""
    out = []
    for first in np.flatnonzero(data["is_first"]):
        lasts = np.flatnonzero(data["is_last"][first:])
        if len(lasts):
            out.append((int(first), int(first + lasts[0] + 1)))
    return out


@torch.no_grad()
def value_report(agent: Agent, data: dict[str, np.ndarray], count: int) -> list[dict[str, Any]]:
    gamma = agent.behavior.discount
    out = []
    for first, end in episodes(data)[-count:]:
        ep = window(data, np.arange(first, end)[None])
        starts = agent.encode_starts(ep)
        feat = agent.wm.rssm.feat({"h": starts["h"], "z": starts["z"]})
        value = agent.behavior.value(feat).mean()[0].cpu().numpy()
        reward = ep["reward"][0]
        # reward[t] came with observation t: the return from t is sum_k gamma^k reward[t+1+k].
        ret = np.zeros(len(reward) + 1)
        for t in range(len(reward) - 2, -1, -1):
            ret[t] = reward[t + 1] + gamma * ret[t + 1]
        steps = np.unique(np.linspace(0, len(reward) - 1, 9).astype(int))
        out.append({"score": float(reward.sum()), "length": int(end - first),
                    # A time limit is no death: the critic rightly values what comes after.
                    "truncated": not bool(ep["is_terminal"][0][-1]),
                    "steps": steps.tolist(), "value": significant(value[steps]),
                    "return": significant(ret[steps])})
    return out


@torch.no_grad()
def last_states(agent: Agent, data: dict[str, np.ndarray], last: int) -> tuple[dict, torch.Tensor]:
    """The last `last` replayed steps as one sequence, and their posterior features (1, T, F):
    encoded once, read by the policy, reward and continue reports alike."""
    n = len(data["reward"])
    ep = window(data, np.arange(max(0, n - last), n)[None])
    starts = agent.encode_starts(ep)
    return ep, agent.wm.rssm.feat({"h": starts["h"], "z": starts["z"]})


@torch.no_grad()
def policy_report(agent: Agent, ep: dict[str, np.ndarray], feat: torch.Tensor
                  ) -> dict[str, Any]:
    dist = agent.behavior.policy(feat)
    quantiles = [0.0, 0.1, 0.5, 0.9, 1.0]
    action = ep["action"][0]
    out: dict[str, Any] = {"steps": int(action.shape[0]), "quantiles": quantiles}
    if agent.behavior.discrete:
        out["entropy"] = rounded(np.quantile(dist.entropy()[0].cpu().numpy(), quantiles))
        out["action_share"] = rounded(action.mean(0))
    else:
        assert isinstance(dist, BoundedNormal)
        loc, std = dist.loc[0].cpu().numpy(), dist.std[0].cpu().numpy()
        out["mean"] = rounded(np.quantile(loc, quantiles, axis=0).T, 2)
        out["std"] = rounded(np.quantile(std, quantiles, axis=0).T, 2)
        out["at_bound"] = rounded((np.abs(action) > 0.95).mean(0))
    return out


@torch.no_grad()
def reward_report(agent: Agent, ep: dict[str, np.ndarray], feat: torch.Tensor
                  ) -> dict[str, Any]:
    pred = agent.wm.reward(feat).mean()[0].cpu().numpy().astype(np.float64)
    # The reward that came with a reset observation is 0 by convention, not an outcome.
    keep = ~ep["is_first"][0]
    pred, true = pred[keep], ep["reward"][0][keep].astype(np.float64)
    zero = true == 0
    out: dict[str, Any] = {"steps": int(true.size), "zero_steps": int(zero.sum())}
    if zero.any():
        bias = float(pred[zero].mean())
        out["pred_at_zero_mean"] = significant([bias])[0]
        out["pred_at_zero_max_abs"] = significant([np.abs(pred[zero]).max()])[0]
        out["phantom_value"] = significant([bias / (1 - agent.behavior.discount)])[0]
    if (~zero).any():
        out["mae_at_nonzero"] = significant([np.abs(pred[~zero] - true[~zero]).mean()])[0]
    return out


@torch.no_grad()
def continue_report(agent: Agent, data: dict[str, np.ndarray], count: int,
                    recent: tuple[dict[str, np.ndarray], torch.Tensor],
                    context: int = 64) -> dict[str, Any]:
    """The continue head at the replay's last `count` terminations (deaths, not time limits),
    each read after up to `context` steps of its episode, and at the live steps of `recent`
    (`last_states`). A termination it gives P(continue) >= 0.5 is one imagination does not see
    coming, so neither critic nor actor can learn to avoid it (RESULTS "CartPole seed 4's dip")."""
    terminals = np.flatnonzero(data["is_terminal"])
    firsts = np.flatnonzero(data["is_first"])
    ends, at, before = [], [], []
    for end in terminals[-count:]:
        begins = firsts[firsts <= end]
        start = max(int(begins[-1]) if len(begins) else 0, int(end) - context + 1)
        _, feat = last_states(agent, window(data, np.arange(start, end + 1)), end + 1 - start)
        p = agent.wm.cont(feat).mean()[0].cpu().numpy().astype(np.float64)
        ends.append(int(end))
        at.append(p[-1])
        before.append(p[-2] if len(p) > 1 else None)
    rows = [{"step": end, "p_continue": significant([a])[0],
             "p_before": None if b is None else significant([b])[0]}
            for end, a, b in zip(ends, at, before, strict=True)]
    ep, feat = recent
    live = ~ep["is_terminal"][0]
    p_live = agent.wm.cont(feat).mean()[0].cpu().numpy().astype(np.float64)[live]
    out: dict[str, Any] = {"terminals": len(terminals), "shown": len(rows), "rows": rows,
                           "live_steps": int(live.sum())}
    if rows:
        out["at_terminal_mean"] = significant([np.mean(at)])[0]
        out["at_terminal_max"] = significant([np.max(at)])[0]
        out["missed_steps"] = [end for end, a in zip(ends, at, strict=True) if a >= 0.5]
        out["missed"] = len(out["missed_steps"])
        seen_before = [b for b in before if b is not None]
        if seen_before:
            out["before_terminal_mean"] = significant([np.mean(seen_before)])[0]
    if live.any():
        out["live_mean"] = significant([p_live.mean()])[0]
        out["live_min"] = significant([p_live.min()])[0]
        out["live_below_half"] = int((p_live < 0.5).sum())
    return out


@torch.no_grad()
def model_report(agent: Agent, data: dict[str, np.ndarray], context: int, horizon: int,
                 windows: int, rng: np.random.Generator) -> dict[str, Any]:
    """Open-loop errors at 1, 5 and `horizon` steps, windows not crossing an episode start."""
    length = context + horizon
    n = len(data["reward"])
    starts: list[int] = []
    for _ in range(100 * windows):
        if len(starts) == windows:
            break
        s = int(rng.integers(0, n - length))
        if not data["is_first"][s + 1:s + length].any():
            starts.append(s)
    if not starts:
        return {"windows": 0, "after_steps": [],
                "note": f"no {length}-step window without an episode start in the replay: "
                        "give a smaller --context or --horizon"}
    batch = window(data, np.array(starts)[:, None] + np.arange(length))
    tensors = agent.tensors(batch, (*agent.wm.keys, *TRAIN_KEYS))
    post, _ = agent.wm.observe({key: value[:, :context] for key, value in tensors.items()})
    start = {"h": post["h"][:, -1], "z": post["z"][:, -1]}
    # The step into t uses a_{t-1}: open-loop steps context..length-1 take actions from context-1.
    prior = agent.wm.rssm.rollout(start, tensors["action"][:, context - 1:length - 1])
    feat = agent.wm.rssm.feat(prior)
    reward = agent.wm.reward(feat).mean().cpu().numpy()
    at = sorted({1, min(5, horizon), horizon})
    out: dict[str, Any] = {"windows": len(starts), "after_steps": at}
    true_reward = batch["reward"][:, context:]
    out["reward_mae"] = rounded([np.abs(reward[:, k - 1] - true_reward[:, k - 1]).mean()
                                 for k in at])
    if "vector" in agent.wm.keys:
        pred = agent.wm.decode(feat)["vector"].mode().cpu().numpy()
        true = batch["vector"][:, context:]
        still = batch["vector"][:, context - 1:context]
        out["vector_rmse"] = [rounded(np.sqrt(((pred[:, k - 1] - true[:, k - 1]) ** 2).mean(0)))
                              for k in at]
        # The representation's own precision: the posterior of the last context step, decoded.
        recon = agent.wm.decode(agent.wm.rssm.feat(start))["vector"].mode().cpu().numpy()
        out["posterior_rmse"] = rounded(np.sqrt(((recon - batch["vector"][:, context - 1]) ** 2)
                                                .mean(0)))
        out["unchanged_rmse"] = [rounded(np.sqrt(((still[:, 0] - true[:, k - 1]) ** 2).mean(0)))
                                 for k in at]
    return out


class FirstThen:
    """An imagination policy that returns `first` at its first call, then policy samples."""

    def __init__(self, first: torch.Tensor, behavior: Behavior) -> None:
        self.first, self.behavior, self.calls = first, behavior, 0

    def __call__(self, feat: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == 1:
            return self.first
        return self.behavior.policy(feat.detach()).sample()


def gradient_report(agent: Agent, data: dict[str, np.ndarray], samples: int,
                    rng: np.random.Generator) -> dict[str, Any] | None:
    """d R_0 / d a_0 at 8 replayed states (the "dynamics" actor gradient's signal)."""
    behavior: Behavior = agent.behavior
    if behavior.discrete:
        return None
    n = len(data["reward"])
    rows = []
    for s in sorted(rng.choice(np.arange(16, n), 8, replace=False)):
        with torch.no_grad():
            ctx = window(data, np.arange(s - 15, s + 1)[None])
            post = agent.encode_starts(ctx)
        start = {"h": post["h"][0, -1:].repeat(samples, 1),
                 "z": post["z"][0, -1:].repeat(samples, 1, 1)}
        feat0 = agent.wm.rssm.feat(start)
        first = behavior.policy(feat0).mode().detach().clone().requires_grad_(True)
        # a_0 is the policy's mean (the leaf differentiated), later actions its samples.
        states, _ = agent.wm.rssm.imagine(start, FirstThen(first, behavior), behavior.ac.horizon)
        feat = agent.wm.rssm.feat(states)
        reward = agent.wm.reward(feat[1:]).mean()
        cont = agent.wm.cont(feat).mean()[1:]
        value = behavior.value(feat).mean()
        ret = lambda_return(reward, cont, value, behavior.discount, behavior.ac.lam)
        (grad,) = torch.autograd.grad(ret[0].sum(), first)
        g = grad.cpu().numpy()
        rows.append({"step": int(s), "action": rounded(first[0].detach().cpu().numpy(), 2),
                     "return": round(float(ret[0].detach().mean()), 2),
                     "grad_mean": rounded(g.mean(0)),
                     "grad_std": rounded(g.std(0)),
                     "grad_positive": rounded((g > 0).mean(0), 2)})
    return {"samples": samples, "states": rows}


def diagnose(run: Path, checkpoint: Path | None = None, episodes: int = 2, last: int = 1000,
             context: int = 16, horizon: int = 15, windows: int = 64, samples: int = 64,
             seed: int = 0, terminals: int = 50) -> dict[str, Any]:
    """The six reports for a run directory, from `checkpoint` (its latest one by default: any
    of its checkpoints, a kept snapshot included) and its replay."""
    checkpoint = run / rundir.CHECKPOINT if checkpoint is None else checkpoint
    if not checkpoint.is_file():
        raise RunError(f"no {rundir.CHECKPOINT} in {run}{rundir.runs_inside(run)}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    # One read: a live run replaces its checkpoint by a rename, never in place.
    loaded = load_agent(checkpoint, device="cpu", parameters="live")
    agent = loaded.agent
    seen = {key: space for key, space in loaded.obs_space.items() if key in agent.wm.keys}
    keys = record_spaces(seen, agent.act_space)
    until = steps_seen(loaded)
    data = load_replay(run, keys, until)
    later = 0 if until is None else sum(max(0, n.end - max(n.first, until))
                                        for n in replay_chunks(run))
    recent = last_states(agent, data, last)
    return {
        "run": str(run), "checkpoint": str(checkpoint), "step": loaded.step,
        "replay_steps": len(data["reward"]), "replay_steps_after": later,
        "values": value_report(agent, data, episodes),
        "policy": policy_report(agent, *recent),
        "reward": reward_report(agent, *recent),
        "continue": continue_report(agent, data, terminals, recent),
        "model": model_report(agent, data, context, horizon, windows, rng),
        "gradient": gradient_report(agent, data, samples, rng),
    }


def format_report(report: dict[str, Any]) -> str:
    lines: list[str] = []
    lines.append(f"{report['run']}: checkpoint at step {report['step']}, "
          f"{report['replay_steps']} replayed steps"
          + (f" (the replay as this checkpoint saw it: the {report['replay_steps_after']} steps "
             "collected after it are left out)" if report.get("replay_steps_after") else ""))
    lines.append("\nvalues (critic V vs discounted return collected) along the last episodes")
    for ep in report["values"]:
        cut = (", cut by the time limit: the return omits what the critic counts after it"
               if ep.get("truncated") else "")
        lines.append(f"  episode score {ep['score']:.1f}, {ep['length']} steps{cut}")
        lines.append("    t:     " + " ".join(f"{t:7d}" for t in ep["steps"]))
        lines.append("    V:     " + " ".join(f"{v:7.3g}" for v in ep["value"]))
        lines.append("    return:" + " ".join(f"{v:7.3g}" for v in ep["return"]))
    pol = report["policy"]
    lines.append(f"\npolicy over the last {pol['steps']} replayed steps, "
                 f"quantiles {pol['quantiles']}")
    for key in ("mean", "std", "entropy", "at_bound", "action_share"):
        if key in pol:
            lines.append(f"  {key}: {pol[key]}")
    rew = report["reward"]
    lines.append(f"\nreward head over {rew['steps']} of the last replayed steps (no resets), "
          f"{rew['zero_steps']} with reward 0")
    if "pred_at_zero_mean" in rew:
        lines.append(f"  prediction where 0: mean {rew['pred_at_zero_mean']}, max |.| "
              f"{rew['pred_at_zero_max_abs']}; as a value (mean / (1 - discount)) "
              f"{rew['phantom_value']}")
    if "mae_at_nonzero" in rew:
        lines.append(f"  MAE where not 0: {rew['mae_at_nonzero']}")
    con = report["continue"]
    lines.append(f"\ncontinue head at the last {con['shown']} of the replay's {con['terminals']} "
                 "terminations (deaths, not time limits)")
    if con["shown"]:
        lines.append(f"  P(continue) at the terminal step: mean {con['at_terminal_mean']}, max "
                     f"{con['at_terminal_max']}; {con['missed']} of {con['shown']} at 0.5 or more")
        if con["missed_steps"]:
            shown = ", ".join(map(str, con["missed_steps"][-8:]))
            lines.append(f"  deaths imagination does not see coming (the critic cannot value "
                         f"avoiding them), at replay steps: {shown}")
        if "before_terminal_mean" in con:
            lines.append(f"  at the step before: mean {con['before_terminal_mean']}")
    if "live_mean" in con:
        lines.append(f"  at the {con['live_steps']} live steps of the last "
                     f"{report['policy']['steps']}: mean {con['live_mean']}, "
                     f"min {con['live_min']}, {con['live_below_half']} below 0.5")
    mod = report["model"]
    lines.append(f"\nmodel open loop over {mod['windows']} windows, "
                 f"after {mod['after_steps']} steps")
    if "note" in mod:
        lines.append(f"  {mod['note']}")
    if "reward_mae" in mod:
        lines.append(f"  reward MAE: {mod['reward_mae']}")
    if "posterior_rmse" in mod:
        lines.append(f"  posterior (reconstruction) RMSE per dim: {mod['posterior_rmse']}")
    for name in ("vector_rmse", "unchanged_rmse"):
        if name in mod:
            lines.append(f"  {name} per dim:")
            for k, row in zip(mod["after_steps"], mod[name], strict=True):
                lines.append(f"    {k:3d}: {row}")
    grad = report["gradient"]
    if grad is not None:
        lines.append(f"\nd R_0 / d a_0 through the model, {grad['samples']} imagined futures "
                     "per state")
        for row in grad["states"]:
            lines.append(f"  step {row['step']:6d} a0 {row['action']} R0 {row['return']:7.2f} "
                  f"grad mean {row['grad_mean']} std {row['grad_std']} "
                  f"positive {row['grad_positive']}")

    return "\n".join(lines) + "\n"
