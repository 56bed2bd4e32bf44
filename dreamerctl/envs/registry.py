"""Task names to suite adapters. Suites load lazily: ale_py and dm_control are imported only when a
task of their suite is checked or made.
"""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Iterable
from types import ModuleType

from dreamerctl.config.schema import EnvConfig
from dreamerctl.envs.base import Env
from dreamerctl.envs.wrappers import TimeLimit
from dreamerctl.errors import UsageError

# suite prefix -> module with `check(name) -> None` and `make(name, cfg, seed) -> Env`.
SUITES = {
    "atari": "dreamerctl.envs.atari",
    "dmc": "dreamerctl.envs.dmc",
    "gym": "dreamerctl.envs.gym",
}
TASK_FORMS = "tasks look like atari_<game>, dmc_<domain>_<task> or gym_<EnvId>"


def split_task(task: str) -> tuple[str, str]:
    """`dmc_walker_walk` -> ("dmc", "walker_walk"); UsageError for an unknown suite."""
    suite, sep, name = task.partition("_")
    if suite not in SUITES:
        fits = [f"{known}_{task}" for known in SUITES if names_a_task(known, task)]
        close = fits or [f"{c}_{name or '...'}"
                         for c in difflib.get_close_matches(suite, list(SUITES), n=1)]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UsageError(f"unknown suite '{suite}' in task '{task}'{hint}: {TASK_FORMS}")
    if not sep or not name:
        raise UsageError(f"task '{task}' names no {suite} environment: {TASK_FORMS}")
    return suite, name


def names_a_task(suite: str, name: str) -> bool:
    """Whether `name` is a task of `suite` without its prefix (`pong` for atari_pong)."""
    try:
        suite_module(suite).check(name)
    except Exception:  # an unknown name, or a suite that cannot load here
        return False
    return True


def suite_module(suite: str) -> ModuleType:
    return importlib.import_module(SUITES[suite])


def check_task(task: str) -> None:
    """Validate a task name cheaply (no env is built); UsageError naming close matches."""
    suite, name = split_task(task)
    suite_module(suite).check(name)


def make_env(task: str, cfg: EnvConfig, seed: int) -> Env:
    """Build one env of `task`; its first reset() is seeded with `seed`.

    cfg.time_limit > 0 replaces the suite's own episode limit with that many agent steps.
    """
    suite, name = split_task(task)
    module = suite_module(suite)
    module.check(name)
    env = module.make(name, cfg, seed)
    if cfg.time_limit > 0:
        env = TimeLimit(env, cfg.time_limit)
    return env


def unknown(kind: str, name: str, suite: str, known: Iterable[str]) -> UsageError:
    """`unknown Atari game 'pongg' (did you mean atari_pong?)`."""
    known = list(known)
    # A spelling that differs only in case or separators (atari_MsPacman) gets one answer.
    same = [k for k in known if squash(k) == squash(name)]
    close = same or difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(f'{suite}_{c}' for c in close)}?)" if close else ""
    return UsageError(f"unknown {kind} '{name}'{hint}")


def squash(name: str) -> str:
    return re.sub(r"[_\-/]", "", name.lower())
