"""Environments: one adapter per suite (atari, dmc, gym) behind one contract (base.py).

Suites load lazily: importing this package imports neither ale_py, dm_control nor torch.
"""

from dreamerctl.envs.base import Env, Obs
from dreamerctl.envs.parallel import EnvCrash, ParallelEnvs
from dreamerctl.envs.registry import check_task, make_env

__all__ = [
    "Env",
    "EnvCrash",
    "Obs",
    "ParallelEnvs",
    "check_task",
    "make_env",
]
