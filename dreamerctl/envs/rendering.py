"""Headless MuJoCo rendering: pick the OpenGL backend before dm_control or mujoco is imported.

dm_control reads MUJOCO_GL once, at import, and without it tries GLFW, which needs an X display.
So before the first import we set MUJOCO_GL to "egl" when a headless EGL display can be created,
else to "osmesa" (software) when libOSMesa loads. The EGL probe uses ctypes only: importing
PyOpenGL to probe would pin PYOPENGL_PLATFORM and break the OSMesa fallback. With neither, MuJoCo
runs without a renderer, and only a frame request fails (with the libraries to install).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from typing import Any

from dreamerctl.errors import RunError

EGL_LIB = "libEGL.so.1"
OSMESA_LIBS = ("libOSMesa.so", "libOSMesa.so.8", "libOSMesa.so.6")
DISABLED = ("disable", "disabled", "off", "false", "0")  # dm_control's names for no renderer
HINT = (
    "install libEGL.so.1 (Debian/Ubuntu: apt-get install libegl1) or libOSMesa.so "
    "(apt-get install libosmesa6), or set MUJOCO_GL"
)

# EGL constants from EGL/egl.h and EGL/eglext.h.
EGL_PLATFORM_DEVICE_EXT = 0x313F
EGL_TRUE = 1

_chosen: str | None = None  # the backend this process picked, when MUJOCO_GL was unset


def ensure_mujoco_gl() -> str:
    """Set MUJOCO_GL (and PYOPENGL_PLATFORM) if unset; return the backend in use.

    Without EGL and OSMesa it is "disable": simulation from vectors still works, and
    require_rendering() names the missing libraries when a frame is needed.
    """
    global _chosen
    backend = os.environ.get("MUJOCO_GL")
    if backend:
        return backend
    if _chosen is None:
        # Probe once per process: the probe terminates its EGL display, and EGL hands out one
        # display per device, so probing again while dm_control renders would break its context.
        _chosen = "egl" if egl_works() else "osmesa" if osmesa_loads() else DISABLED[0]
    backend = _chosen
    os.environ["MUJOCO_GL"] = backend
    if backend != DISABLED[0]:
        # PyOpenGL must agree with dm_control / mujoco; spawned env workers inherit both.
        os.environ.setdefault("PYOPENGL_PLATFORM", backend)
    return backend


def require_rendering() -> None:
    """RunError naming the missing system libraries when MuJoCo has no way to render."""
    if ensure_mujoco_gl().lower() in DISABLED:
        raise RunError(f"MuJoCo cannot render without OpenGL: {HINT}")


def load_library(names: tuple[str, ...]) -> ctypes.CDLL | None:
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def osmesa_loads() -> bool:
    return load_library(OSMESA_LIBS) is not None


def egl_works() -> bool:
    """Whether a headless EGL display initialises, the way dm_control creates one.

    dm_control enumerates EGL devices (EGL_EXT_device_enumeration) and initialises a platform
    display on the first device that accepts it; we do the same, then terminate the display.
    """
    egl = load_library((EGL_LIB,))
    if egl is None:
        return False
    try:
        return any(init_device_display(egl, device) for device in egl_devices(egl))
    except (AttributeError, OSError):
        return False


def egl_proc(egl: ctypes.CDLL, name: str, restype: type, *argtypes: type) -> Callable[..., Any]:
    """An EGL extension function looked up with eglGetProcAddress."""
    egl.eglGetProcAddress.restype = ctypes.c_void_p
    egl.eglGetProcAddress.argtypes = [ctypes.c_char_p]
    address = egl.eglGetProcAddress(name.encode())
    if not address:
        raise AttributeError(name)
    return ctypes.CFUNCTYPE(restype, *argtypes)(address)


def egl_devices(egl: ctypes.CDLL) -> list[int | None]:
    query = egl_proc(
        egl, "eglQueryDevicesEXT", ctypes.c_uint, ctypes.c_int, ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_int),
    )
    count = ctypes.c_int(0)
    if query(0, None, ctypes.byref(count)) != EGL_TRUE or count.value < 1:
        return []
    devices = (ctypes.c_void_p * count.value)()
    if query(count.value, devices, ctypes.byref(count)) != EGL_TRUE:
        return []
    return list(devices[: count.value])


def init_device_display(egl: ctypes.CDLL, device: int | None) -> bool:
    get_display = egl_proc(
        egl, "eglGetPlatformDisplayEXT", ctypes.c_void_p, ctypes.c_uint, ctypes.c_void_p,
        ctypes.c_void_p,
    )
    display = get_display(EGL_PLATFORM_DEVICE_EXT, device, None)
    if not display:
        return False
    egl.eglInitialize.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    egl.eglTerminate.argtypes = [ctypes.c_void_p]
    if egl.eglInitialize(display, None, None) != EGL_TRUE:
        return False
    egl.eglTerminate(display)
    return True
