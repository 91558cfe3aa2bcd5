"""Custom arms: any importable `module:callable` run as an arm of a batch (docs/AGENTS.md).

`load_arm(name)` imports and checks the callable (one argument, not async): the batch calls
it for every custom arm before anything is measured, so a typo costs one line, not a batch.
`run_custom(...)` runs one measured run: the arm's callable gets an `ArmContext`
(alems.experiment.workflows.context) inside a phase of kind `agent`, in a worker thread, so
that a run that never returns can be given up on.

Timeout. Python cannot kill a thread. After `timeout_s` the context is cancelled: the
arm's next model call, tool call or mark raises, and the run is recorded as failed
(`ArmTimeout`); the batch goes on. An arm that does not come back within as long again
(blocked outside the context: a sleep, a socket, a lock) is abandoned: its run is recorded
as failed (`ArmAbandoned`) and the batch then stops, since every later run would be
measured beside a thread still running (rerunning the command resumes after that run).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import inspect
import os
import sys
import threading
import time
import traceback
from pathlib import Path

from alems.catalog.arms import (AGENT_KIND, ARMS, CUSTOM_ARM_MAX_CHARS, CUSTOM_ARM_PATTERN,
                                is_custom_arm)
from alems.errors import AlemsError, UsageError
from alems.experiment.plan import DEFAULT_ARM_TIMEOUT_S
from alems.experiment.workflows.base import Limits, Tally, WorkflowResult, sampler_or_null
from alems.experiment.workflows.context import (ArmCancelled, ArmContext, ModelClient,
                                                PhaseRecorder, ToolBox, _Guard)



class ArmError(AlemsError):
    """A custom arm broke the protocol (it returned something other than a string)."""


class ArmTimeout(AlemsError):
    """A custom run took longer than its timeout and stopped at its next context call."""


class ArmAbandoned(AlemsError):
    """A custom run neither returned nor stopped: its thread is left running."""


class ArmRaised(AlemsError):
    """A custom arm raised: its message is the arm's exception and where it was raised,
    e.g. "ValueError: no plan (at my_agent.py:12)"; the exception is its __cause__."""


def _importable_from_cwd() -> None:
    """Let `module:callable` name a module in the current folder, as `python -m` and
    uvicorn's `module:app` do (an installed `alems` script does not put it on sys.path)."""
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)


@functools.cache
def load_arm(name: str):
    """The callable a custom arm names, checked; UsageError (one line) when it is not one."""
    if not is_custom_arm(name):
        raise UsageError(
            f"unknown workflow {name!r}; choose from: {', '.join(ARMS)}, or name your own "
            f"agent as module:callable (ASCII identifiers and dots, at most "
            f"{CUSTOM_ARM_MAX_CHARS} characters; docs/AGENTS.md)")
    module_name, _, attr = name.partition(":")
    _importable_from_cwd()
    try:
        obj = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - whatever the import raised: one line
        raise UsageError(f"custom arm {name}: cannot import {module_name}: "
                         f"{type(exc).__name__}: {exc}".splitlines()[0]) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"custom arm {name}: {module_name} has no {attr}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UsageError(f"custom arm {name}: {attr} is a {type(obj).__name__}, not a callable")
    if inspect.iscoroutinefunction(obj):
        raise UsageError(f"custom arm {name}: {attr} is async; give a plain function that "
                         "runs it (def arm(ctx): return asyncio.run(my_agent(ctx)))")
    try:
        inspect.signature(obj).bind(object())
    except TypeError:
        raise UsageError(f"custom arm {name}: {attr}{inspect.signature(obj)} must take exactly "
                         "one argument, the run context (def my_agent(ctx): ... return answer)"
                         ) from None
    except ValueError:   # no signature to read (a builtin): found out when it runs
        pass
    return obj


def check_arms(workflows) -> dict:
    """Import and check every custom arm of a batch, before anything runs. Returns, for
    the session's settings, where each arm's code came from: {name: {"file", "sha256"}}
    (the file of its module; None where it has none), so a result can be traced to it."""
    sources = {}
    for name in workflows:
        if name not in ARMS:
            fn = load_arm(name)
            path = getattr(sys.modules.get(name.partition(":")[0]), "__file__", None)
            digest = None
            if path:
                with contextlib.suppress(OSError):
                    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            sources[name] = {"file": path, "sha256": digest,
                             "qualname": getattr(fn, "__qualname__", None)}
    return sources


def _where(exc: BaseException) -> str:
    """' (at file.py:12)' of the innermost frame of the arm's exception."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f" (at {os.path.basename(last.filename)}:{last.lineno})"


# How long the measuring thread waits at a time for the arm's thread: CPython runs a signal's
# handler only between the main thread's bytecodes, so a Ctrl-C that lands just as a long
# `join` begins (or on another thread) would wait for the whole join; a slice bounds that.
JOIN_SLICE_S = 0.1


def _join(worker: threading.Thread, timeout_s: float) -> None:
    """`worker.join(timeout_s)`, in slices of JOIN_SLICE_S (see there)."""
    deadline = time.monotonic() + timeout_s
    while worker.is_alive():
        left_s = deadline - time.monotonic()
        if left_s <= 0:
            return
        worker.join(min(left_s, JOIN_SLICE_S))


def run_custom(name: str, provider, item, settings, sampler, *, task: str = "",
               max_steps: int = 5, max_tool_calls: int = 5,
               timeout_s: float = DEFAULT_ARM_TIMEOUT_S) -> WorkflowResult:
    """One run of custom arm `name` (see the module docstring). The arm's own exception is
    re-raised here (its message gains where it was raised)."""
    fn = load_arm(name)
    limits = Limits(max_steps, max_tool_calls)
    sampler = sampler_or_null(sampler)
    tally, guard = Tally(), _Guard()
    phases = PhaseRecorder(sampler, guard)
    ctx = ArmContext(prompt=item.prompt, item_id=str(getattr(item, "id", "")), task=task,
                     arm=name, model=ModelClient(provider, settings, sampler, tally, guard,
                                                 limits),
                     tools=ToolBox(sampler, tally, guard), phases=phases, limits=limits)
    outcome: dict = {}

    def work() -> None:
        try:
            with sampler.phase("agent", kind=AGENT_KIND, arm=name):
                try:
                    outcome["answer"] = fn(ctx)
                finally:
                    with guard.lock:
                        phases.close_all()
        except BaseException as exc:  # noqa: BLE001 - handed to the measuring thread
            outcome["error"] = exc

    worker = threading.Thread(target=work, name=f"alems-arm-{name}", daemon=True)
    try:   # (start inside: a Ctrl-C arriving as it starts still cancels the context)
        worker.start()
        _join(worker, timeout_s)
        if worker.is_alive():
            guard.cancelled.set()
            outcome["timed_out"] = True
            _join(worker, timeout_s)
    finally:   # (also on Ctrl-C while waiting) the context is the run's: the arm stops at
        guard.cancelled.set()   # its next call, and its own threads' later calls raise
    if worker.is_alive():
        raise ArmAbandoned(f"{name} did not return within {timeout_s:g} s nor stop within "
                           f"{timeout_s:g} s more (blocked outside the context?); its thread "
                           "is still running")
    error = outcome.get("error")
    if isinstance(error, ArmCancelled) or (error is None and outcome.get("timed_out")):
        raise ArmTimeout(f"{name} did not return within {timeout_s:g} s (--arm-timeout); "
                         "stopped at its next call through the context")
    if error is not None:   # SystemExit too: an arm's exit ends its run, not the batch
        raise ArmRaised(f"{type(error).__name__}: {error}{_where(error)}") from error
    answer = outcome.get("answer")
    if not isinstance(answer, str):
        raise ArmError(f"{name} returned {type(answer).__name__}, not the answer string")
    tally.trace.append({"event": "answer", "text": answer})
    return tally.result(answer)


__all__ = ["load_arm", "check_arms", "run_custom", "ArmError", "ArmTimeout", "ArmAbandoned",
           "ArmRaised", "CUSTOM_ARM_PATTERN"]
