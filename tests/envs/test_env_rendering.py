"""Headless MuJoCo backend selection and a quiet interpreter exit after DMC rendering."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dreamerctl.envs.rendering import osmesa_loads, require_rendering
from dreamerctl.errors import RunError


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    return subprocess.run(
        [sys.executable, "-c", code], env={**environ, **env}, capture_output=True, text=True,
        timeout=120, check=False,
    )


def test_backend_is_chosen_when_unset() -> None:
    # egl_works() terminates the display it probes, so it runs in the subprocess too: in this
    # process it would break the EGL context of DMC envs that other tests render with.
    code = (
        "import os\n"
        "from dreamerctl.envs.rendering import ensure_mujoco_gl, egl_works, osmesa_loads\n"
        "expected = 'egl' if egl_works() else 'osmesa' if osmesa_loads() else 'disable'\n"
        "print(ensure_mujoco_gl(), os.environ['MUJOCO_GL'], os.environ['PYOPENGL_PLATFORM'],"
        " expected)\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    backend, env_gl, pyopengl, expected = result.stdout.split()
    assert backend == env_gl == pyopengl == expected


def test_no_renderer_names_the_system_libraries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUJOCO_GL", "disable")
    with pytest.raises(RunError, match=r"libEGL\.so\.1 .*libegl1.*libOSMesa\.so.*libosmesa6"):
        require_rendering()


@pytest.mark.skipif(not osmesa_loads(), reason="needs libOSMesa")
def test_dmc_exits_quietly_without_close() -> None:
    # OSMesa renders on a dm_control thread that stops before atexit handlers run; an env left
    # open at exit must still not print "cannot schedule new futures after shutdown".
    code = (
        "from dreamerctl.config import build_config\n"
        "from dreamerctl.envs import make_env\n"
        "cfg = build_config('dmc_cartpole_balance', ['debug']).env\n"
        "env = make_env('dmc_cartpole_balance', cfg, 0)\n"
        "env.reset(); env.step([0.0]); env.render()\n"
        "print('ok')\n"
    )
    result = run_python(code, MUJOCO_GL="osmesa")
    assert result.returncode == 0 and result.stdout == "ok\n"
    assert "Exception ignored" not in result.stderr and "futures" not in result.stderr
