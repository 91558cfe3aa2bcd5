"""Conditions around a batch's measured runs: the warm-up before the first, waiting for a
quiet machine before each (--require-quiet)."""

from __future__ import annotations

from collections.abc import Callable

from alems.measure.quiet import QUIET_RULE, wait_for_quiet

WARM_UP_PROMPT = "Reply with the word ready."


def warm_up(providers: dict, cfg, log: Callable[[str], None]) -> None:
    """One unmeasured call per provider, so that the first measured run does not pay the
    page-cache, allocator and connection warm-up the others do not."""
    from alems.experiment.providers import GenerationSettings

    settings = GenerationSettings(max_tokens=cfg.max_tokens, temperature=cfg.temperature,
                                  seed=cfg.seed)
    for name, provider in providers.items():
        try:
            provider.generate(WARM_UP_PROMPT, settings)
        except Exception as exc:  # noqa: BLE001 - the measured runs will report it
            log(f"warm-up call to provider {name!r} failed: {exc}")
        else:
            log(f"warm-up: one unmeasured call to provider {name!r}")


class QuietGate:
    """batch --require-quiet: before each run, wait up to `timeout_s` for a quiet machine
    (alems.measure.quiet, QUIET_RULE). The first wait that times out is said once, and the
    gate opens for good: the rest of the batch runs without waiting, each run flagged by
    its own measurement when it is not quiet. A machine that never gets quiet costs one
    timeout, not one per run."""

    def __init__(self, timeout_s: float, log: Callable[[str], None], wait=None):
        self.timeout_s = timeout_s
        self.log = log
        self.wait = wait            # None: alems.measure.quiet.wait_for_quiet
        self.gave_up = False
        self._announced = False

    def before_run(self) -> bool | None:
        """Wait for quiet (True), or time out (False); None once the gate has given up."""
        if self.gave_up:
            return None
        if not self._announced:
            self._announced = True
            self.log(f"--require-quiet: before each run, waiting up to {self.timeout_s:g} s for "
                     f"a quiet machine ({QUIET_RULE}); if it does not get quiet, the batch "
                     "says so and runs on without waiting, runs that are not quiet flagged")
        quiet, waited, why = (self.wait or wait_for_quiet)(self.timeout_s)
        if not quiet:
            self.gave_up = True
            self.log(f"machine not quiet after {waited:.0f} s ({why}); running this and every "
                     "later run without waiting for quiet — runs that are not quiet are "
                     "flagged (runs.quiet = 0) and the summary warns")
        return quiet

