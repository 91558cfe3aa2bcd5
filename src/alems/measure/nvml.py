"""NVML (NVIDIA Management Library) through ctypes, loaded at run time.

A-LEMS never links NVML: `open_nvml()` loads `libnvidia-ml.so.1` (or ALEMS_NVML_LIB) when a
GPU is to be measured, so A-LEMS installs and runs where there is no NVIDIA driver. Only
the few functions used are bound, with the signatures of nvml.h:

    nvmlReturn_t nvmlInit_v2(void);  nvmlShutdown(void);  const char *nvmlErrorString(nvmlReturn_t)
    nvmlDeviceGetCount_v2(unsigned int *)
    nvmlDeviceGetHandleByIndex_v2(unsigned int, nvmlDevice_t *)   (nvmlDevice_t: opaque pointer)
    nvmlDeviceGetName / nvmlDeviceGetUUID(nvmlDevice_t, char *, unsigned int)
    nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t, unsigned long long *)   mJ, Volta+
    nvmlDeviceGetPowerUsage(nvmlDevice_t, unsigned int *)                     mW

ctypes releases the GIL during each call, so a slow driver call never stalls Python threads.
"""

from __future__ import annotations

import ctypes
import threading

from alems import config

# nvmlReturn_t values used here (nvml.h)
SUCCESS = 0
ERROR_NOT_SUPPORTED = 3
ERROR_NO_PERMISSION = 4
ERROR_DRIVER_NOT_LOADED = 9
ERROR_LIBRARY_NOT_FOUND = 12
ERROR_FUNCTION_NOT_FOUND = 13
ERROR_LIB_RM_VERSION_MISMATCH = 18

NAME_BUFFER_SIZE = 96   # NVML_DEVICE_NAME_V2_BUFFER_SIZE
UUID_BUFFER_SIZE = 96   # NVML_DEVICE_UUID_V2_BUFFER_SIZE

_FIXES = {
    ERROR_NO_PERMISSION: "run as a user allowed to open /dev/nvidia* (e.g. in the video "
                         "group) or as root",
    ERROR_DRIVER_NOT_LOADED: "load the NVIDIA kernel driver (`nvidia-smi` must work)",
    ERROR_LIB_RM_VERSION_MISMATCH: "the NVML library and the kernel driver differ in "
                                   "version: reboot, or reinstall the driver",
    ERROR_LIBRARY_NOT_FOUND: "install the NVIDIA driver, or set ALEMS_NVML_LIB to "
                             "libnvidia-ml.so.1",
}
MISSING_FIX = ("install the NVIDIA driver (it ships libnvidia-ml.so.1), or set "
               "ALEMS_NVML_LIB to its path")


class NvmlError(Exception):
    """An NVML call returned `code`; `fix` says what to do where something can be done."""

    def __init__(self, code: int, message: str, call: str = ""):
        super().__init__(f"{call}: {message} (NVML error {code})" if call else message)
        self.code = int(code)
        self.message = message
        self.call = call
        self.fix = _FIXES.get(self.code, "")


class NvmlMissing(Exception):
    """The NVML library cannot be loaded."""

    fix = MISSING_FIX


_libs: dict[str, ctypes.CDLL] = {}
_lock = threading.Lock()


def _load(path: str) -> ctypes.CDLL:
    with _lock:
        if path not in _libs:
            try:
                _libs[path] = ctypes.CDLL(path)
            except OSError as exc:
                raise NvmlMissing(f"NVML library {path} cannot be loaded ({exc})") from None
        return _libs[path]


class Nvml:
    """One initialised NVML session (nvmlInit_v2 … nvmlShutdown; NVML counts them)."""

    def __init__(self, path: str | None = None):
        self.path = path or config.nvml_lib()
        self._lib = _load(self.path)
        err = self._fn("nvmlErrorString", ctypes.c_char_p, [ctypes.c_int], required=False)
        self._error_string = err
        self._check(self._fn("nvmlInit_v2", ctypes.c_int, [])(), "nvmlInit_v2")
        self._open = True
        uint_p = ctypes.POINTER(ctypes.c_uint)
        handle_p = ctypes.POINTER(ctypes.c_void_p)
        self._count = self._fn("nvmlDeviceGetCount_v2", ctypes.c_int, [uint_p])
        self._by_index = self._fn("nvmlDeviceGetHandleByIndex_v2", ctypes.c_int,
                                  [ctypes.c_uint, handle_p])
        self._name = self._fn("nvmlDeviceGetName", ctypes.c_int,
                              [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint])
        self._uuid = self._fn("nvmlDeviceGetUUID", ctypes.c_int,
                              [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint], required=False)
        self._energy = self._fn("nvmlDeviceGetTotalEnergyConsumption", ctypes.c_int,
                                [ctypes.c_void_p, ctypes.POINTER(ctypes.c_ulonglong)],
                                required=False)
        self._power = self._fn("nvmlDeviceGetPowerUsage", ctypes.c_int,
                               [ctypes.c_void_p, uint_p], required=False)

    def _fn(self, name: str, restype, argtypes, required: bool = True):
        try:
            fn = getattr(self._lib, name)
        except AttributeError:
            if required:
                raise NvmlError(ERROR_FUNCTION_NOT_FOUND,
                                f"{self.path} has no {name} (driver too old?)", name) from None
            return None
        fn.restype, fn.argtypes = restype, argtypes
        return fn

    def error_string(self, code: int) -> str:
        if self._error_string is not None:
            text = self._error_string(int(code))
            if text:
                return text.decode(errors="replace")
        return f"NVML error {code}"

    def _check(self, rc: int, call: str) -> None:
        if rc != SUCCESS:
            raise NvmlError(rc, self.error_string(rc), call)

    # ---- devices
    def device_count(self) -> int:
        n = ctypes.c_uint(0)
        self._check(self._count(ctypes.byref(n)), "nvmlDeviceGetCount_v2")
        return int(n.value)

    def handle(self, index: int) -> ctypes.c_void_p:
        h = ctypes.c_void_p()
        self._check(self._by_index(int(index), ctypes.byref(h)), "nvmlDeviceGetHandleByIndex_v2")
        return h

    def name(self, handle) -> str:
        buf = ctypes.create_string_buffer(NAME_BUFFER_SIZE)
        self._check(self._name(handle, buf, NAME_BUFFER_SIZE), "nvmlDeviceGetName")
        return buf.value.decode(errors="replace")

    def uuid(self, handle) -> str | None:
        if self._uuid is None:
            return None
        buf = ctypes.create_string_buffer(UUID_BUFFER_SIZE)
        if self._uuid(handle, buf, UUID_BUFFER_SIZE) != SUCCESS:
            return None
        return buf.value.decode(errors="replace")

    # ---- readings
    def energy_mj(self, handle) -> int:
        """Total energy since the driver was loaded (mJ)."""
        if self._energy is None:
            raise NvmlError(ERROR_NOT_SUPPORTED, "no nvmlDeviceGetTotalEnergyConsumption",
                            "nvmlDeviceGetTotalEnergyConsumption")
        v = ctypes.c_ulonglong(0)
        self._check(self._energy(handle, ctypes.byref(v)), "nvmlDeviceGetTotalEnergyConsumption")
        return int(v.value)

    def power_mw(self, handle) -> int:
        """Current board power draw (mW)."""
        if self._power is None:
            raise NvmlError(ERROR_NOT_SUPPORTED, "no nvmlDeviceGetPowerUsage",
                            "nvmlDeviceGetPowerUsage")
        v = ctypes.c_uint(0)
        self._check(self._power(handle, ctypes.byref(v)), "nvmlDeviceGetPowerUsage")
        return int(v.value)

    def close(self) -> None:
        if self._open:
            self._open = False
            self._fn("nvmlShutdown", ctypes.c_int, [])()

    def __enter__(self) -> Nvml:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
