"""Custom arms for tests/test_custom_arms.py, named `_arms:<function>` on --workflows (the
tests folder is on sys.path under pytest)."""

from __future__ import annotations

import contextlib
import threading

RELEASE = threading.Event()   # lets `stuck` end once its test has seen the batch stop


def good(ctx):
    """Plan with tools, run a calculator call, mark two steps, answer."""
    ctx.phases.mark("retrieve")
    plan = ctx.model.complete(ctx.prompt, tools=True)
    outputs = []
    for call in plan.tool_calls:
        try:
            outputs.append(ctx.tools.run(call))
        except ctx.tools.Error as exc:
            outputs.append(f"error: {exc}")
    outputs.append(ctx.tools.call("calculator", {"expression": "6 * 7"}))
    ctx.phases.mark("answer")
    with ctx.phases.phase("draft"):
        reply = ctx.model.complete([{"role": "system", "content": "Be brief."},
                                    {"role": "user", "content": ctx.prompt},
                                    {"role": "assistant", "content": "Let me use the tools."},
                                    {"role": "user", "content": "Results: " + "; ".join(outputs)}])
    return reply.text


def raises(ctx):
    ctx.model.complete(ctx.prompt)
    raise ValueError("no plan today")


def returns_int(ctx):
    return 42


def loops(ctx):
    """Never returns, but every step goes through the context (an agent loop gone wrong)."""
    while True:
        with contextlib.suppress(Exception):   # even a catch-all must not keep it alive
            ctx.model.complete(ctx.prompt)


def stuck(ctx):
    """Never returns and never calls the context again: blocked outside it."""
    RELEASE.wait()
    return "released"


def two_args(ctx, extra):
    return "x"


async def coroutine(ctx):
    return "x"


NOT_CALLABLE = 3


def exits(ctx):
    raise SystemExit(3)


def leaks(ctx):
    """Returns, leaving a thread that uses the context after the run: those calls raise."""
    def later():
        RAN_LATE.wait()
        try:
            ctx.model.complete(ctx.prompt)
        except BaseException as exc:  # noqa: BLE001 - what the test looks at
            LATE.append(type(exc).__name__)
        else:
            LATE.append("recorded")
    threading.Thread(target=later, daemon=True).start()
    return "Answer: 4"


RAN_LATE, LATE = threading.Event(), []


def _call_until_stopped(ctx, ended: threading.Event):
    """Keep calling the context until it raises (the run was stopped); then set `ended`."""
    try:
        while True:
            ctx.model.complete(ctx.prompt)
    finally:
        ended.set()


def interrupts(ctx):
    """Ctrl-C arrives while the arm runs; it keeps calling the context until told to stop."""
    import os
    import signal

    os.kill(os.getpid(), signal.SIGINT)
    _call_until_stopped(ctx, INTERRUPTED_ARM_ENDED)


INTERRUPTED_ARM_ENDED = threading.Event()


def interrupted_on_its_own_thread(ctx):
    """Ctrl-C taken by the arm's own thread (a process-wide signal may land on any thread, or
    as the measuring thread starts to wait): the measuring thread must still see it."""
    import signal

    for _ in range(3):   # (the measuring thread is waiting for this one by now)
        ctx.model.complete(ctx.prompt)
    signal.pthread_kill(threading.get_ident(), signal.SIGINT)
    _call_until_stopped(ctx, OWN_THREAD_ARM_ENDED)


OWN_THREAD_ARM_ENDED = threading.Event()
