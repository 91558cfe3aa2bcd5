"""The `gpu` source: NVIDIA GPUs through NVML (alems.measure.nvml), one per visible GPU.

Not a C-core source (NVML is a library, not a file the C thread can read): the GPUs are
read by their own thread (alems.measure.gpu_sampler) on the same CLOCK_MONOTONIC clock.

Per GPU the measurement is the driver's cumulative energy counter
(`nvmlDeviceGetTotalEnergyConsumption`, mJ, Volta and later); where the GPU has none, its
power (`nvmlDeviceGetPowerUsage`, mW) integrated on the GPU sample clock (trapezoids),
labelled `power-integrated`. A counter (or a power reading) that does not move within a
short window is rejected, as the frozen RAPL counter is (alems.measure.sources.liveness).

Which GPUs: `--gpus 0,2` (NVML indices), else CUDA_VISIBLE_DEVICES (indices or GPU-UUID
prefixes, as CUDA reads it: up to the first invalid entry; an empty value or -1 means no
GPU; MIG instances are not measured: they have no energy counter of their own), else all.
Integer entries are taken as NVML indices, which equal CUDA's only with
CUDA_DEVICE_ORDER=PCI_BUS_ID; UUIDs are unambiguous.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from alems import config
from alems.errors import AlemsError, UsageError
from alems.measure.nvml import Nvml, NvmlError, NvmlMissing

NAME = "gpu"
DESCRIPTION = "NVIDIA GPU energy through NVML (energy counter, else integrated power)"
ENERGY = "energy-counter"
POWER = "power-integrated"
LIVENESS_WINDOW_S = 0.3

# Process-wide memo of liveness answers, as for RAPL: they do not change within a batch.
_live_cache: dict[tuple, str | None] = {}


@dataclass
class GpuDevice:
    index: int               # NVML index
    name: str
    uuid: str | None
    method: str              # ENERGY or POWER
    handle: object = field(default=None, repr=False)

    def column(self) -> str:
        return f"gpu{self.index}_energy_uj"

    def as_dict(self) -> dict:
        return {"index": self.index, "name": self.name, "uuid": self.uuid, "method": self.method,
                "column": self.column()}


@dataclass
class GpuReport:
    """What `alems doctor` shows: NVML's state and each GPU with its counter's state."""

    ok: bool
    reason: str
    fix: str = ""
    selection: str = ""
    gpus: list[dict] = field(default_factory=list)


# ---------------------------------------------------------------- selection

def parse_gpus(text: str | None) -> list[int] | None:
    """'--gpus' text: '0,2' -> [0, 2]; 'none' -> []; None/'' /'auto' -> None (default)."""
    if text is None or not text.strip() or text.strip().lower() == "auto":
        return None
    if text.strip().lower() == "none":
        return []
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit():
            raise UsageError(f"--gpus {text!r}: {part!r} is not a GPU index; "
                             "e.g. --gpus 0,2, or --gpus none")
        out.append(int(part))
    return list(dict.fromkeys(out))


def cuda_selection(raw: str | None,
                   uuids: dict[int, str | None]) -> tuple[list[int] | None, list[str]]:
    """NVML indices named by CUDA_VISIBLE_DEVICES (None = unset: all) and notes on entries
    that were not used. Parsing stops at the first invalid entry, as CUDA's does."""
    if raw is None:
        return None, []
    notes: list[str] = []
    out: list[int] = []
    for part in [p.strip() for p in raw.split(",")]:
        if not part:
            break
        if part.lstrip("-").isdigit():
            if int(part) < 0 or int(part) not in uuids:
                if int(part) >= 0:
                    notes.append(f"CUDA_VISIBLE_DEVICES entry {part}: no such GPU")
                break
            out.append(int(part))
        elif part.startswith("MIG-"):
            notes.append(f"CUDA_VISIBLE_DEVICES entry {part}: MIG instances have no energy "
                         "counter of their own; not measured")
            break
        else:
            match = [i for i, u in uuids.items() if u and u.startswith(
                part if part.startswith("GPU-") else "GPU-" + part)]
            if len(match) != 1:
                notes.append(f"CUDA_VISIBLE_DEVICES entry {part}: matches "
                             f"{'no' if not match else 'more than one'} GPU UUID")
                break
            out.append(match[0])
    return list(dict.fromkeys(out)), notes


# ---------------------------------------------------------------- discovery

def open_nvml() -> Nvml:
    """An initialised NVML session, or AlemsError-ready exceptions (NvmlMissing/NvmlError)."""
    return Nvml(config.nvml_lib())


def _reading(nvml: Nvml, dev: GpuDevice) -> int:
    return nvml.energy_mj(dev.handle) if dev.method == ENERGY else nvml.power_mw(dev.handle)


def _method(nvml: Nvml, handle) -> tuple[str | None, str]:
    """(method, why) for one device: its energy counter, else its power, else None."""
    why = ""
    try:
        nvml.energy_mj(handle)
        return ENERGY, ""
    except NvmlError as exc:
        why = f"energy counter: {exc.message}"
    try:
        nvml.power_mw(handle)
        return POWER, why
    except NvmlError as exc:
        return None, f"{why}; power: {exc.message}"


def liveness(nvml: Nvml, dev: GpuDevice, window_s: float = LIVENESS_WINDOW_S) -> str | None:
    """None when the reading changes (energy) or is non-zero (power) within `window_s`;
    else why it is not a measurement."""
    key = (nvml.path, dev.index, dev.uuid, dev.method, window_s)
    if key in _live_cache:
        return _live_cache[key]
    first = _reading(nvml, dev)
    deadline = time.monotonic() + window_s
    why = None
    while True:
        value = _reading(nvml, dev)
        if (dev.method == ENERGY and value != first) or (dev.method == POWER and value > 0):
            break
        if time.monotonic() >= deadline:
            why = (f"its {'energy counter' if dev.method == ENERGY else 'power reading'} "
                   f"did not {'advance' if dev.method == ENERGY else 'leave 0'} in "
                   f"{window_s:g} s (a virtualised or disabled sensor): it would report 0 J, "
                   "not a measurement")
            break
        time.sleep(0.005)
    _live_cache[key] = why
    return why


def discover(nvml: Nvml, requested: list[int] | None, notes: list[str]) -> list[GpuDevice]:
    """The GPUs to measure. requested: explicit NVML indices (each must work, else one
    AlemsError), or None for the default (CUDA_VISIBLE_DEVICES, else all; unusable GPUs
    are skipped with a note)."""
    count = nvml.device_count()
    handles = {i: nvml.handle(i) for i in range(count)}
    explicit = requested is not None
    if requested is not None:
        bad = [i for i in requested if i not in handles]
        if bad:
            raise AlemsError(f"--gpus: no GPU {', '.join(map(str, bad))} (NVML sees {count}: "
                             f"0..{count - 1}); run `alems doctor` to list them")
        indices = requested
    else:
        uuids = {i: nvml.uuid(h) for i, h in handles.items()}
        selected, cuda_notes = cuda_selection(config.cuda_visible_devices(), uuids)
        notes += [f"gpu: {n}" for n in cuda_notes]
        indices = list(handles) if selected is None else selected
    devices = []
    for i in indices:
        h = handles[i]
        method, why = _method(nvml, h)
        dev = GpuDevice(i, nvml.name(h), nvml.uuid(h), method or "", h)
        problem = why if method is None else liveness(nvml, dev)
        if problem is not None:
            if explicit:
                raise AlemsError(f"GPU {i} ({dev.name}) cannot be measured: {problem}; "
                                 "choose other GPUs with --gpus, or --gpus none")
            notes.append(f"gpu{i} ({dev.name}): not used: {problem}")
            continue
        if method == POWER:
            notes.append(f"gpu{i} ({dev.name}): no energy counter ({why}); energy is its "
                         "power integrated on the GPU sample clock (power-integrated)")
        devices.append(dev)
    return devices


def unavailable_reason(exc: BaseException) -> tuple[str, str]:
    """(reason, fix) for a failure to open NVML."""
    if isinstance(exc, NvmlMissing):
        return str(exc), exc.fix
    if isinstance(exc, NvmlError):
        return f"NVML: {exc}", exc.fix
    return f"NVML: {exc}", ""


def report(requested: list[int] | None = None) -> GpuReport:
    """Doctor's view: NVML's state, then every GPU with its name, method and liveness."""
    cuda = config.cuda_visible_devices()
    selection = ("--gpus" if requested is not None else
                 "all GPUs (CUDA_VISIBLE_DEVICES unset)" if cuda is None
                 else f"CUDA_VISIBLE_DEVICES={cuda!r}")
    try:
        nvml = open_nvml()
    except (NvmlMissing, NvmlError) as exc:
        reason, fix = unavailable_reason(exc)
        return GpuReport(False, f"no GPU measured: {reason}", fix, selection)
    try:
        count = nvml.device_count()
        handles = {i: nvml.handle(i) for i in range(count)}
        uuids = {i: nvml.uuid(h) for i, h in handles.items()}
        chosen, notes = (requested, []) if requested is not None else \
            cuda_selection(cuda, uuids)
        chosen = list(handles) if chosen is None else chosen
        gpus = []
        for i, h in handles.items():
            method, why = _method(nvml, h)
            dev = GpuDevice(i, nvml.name(h), uuids[i], method or "", h)
            problem = why if method is None else liveness(nvml, dev)
            gpus.append({**dev.as_dict(), "selected": i in chosen, "ok": problem is None,
                         "reason": problem or (why if method == POWER else "")})
    except NvmlError as exc:
        return GpuReport(False, f"NVML: {exc}", exc.fix, selection)
    finally:
        nvml.close()
    if not gpus:
        return GpuReport(False, "NVML works but sees no GPU", "", selection)
    usable = [g for g in gpus if g["ok"] and g["selected"]]
    reason = (f"{len(usable)} of {len(gpus)} GPU(s) measured by default"
              + ("; " + "; ".join(notes) if notes else ""))
    return GpuReport(bool(usable), reason, "", selection, gpus)
