"""Conditions around a batch's measured runs: the warm-up before the first, waiting for a
quiet machine before each (--require-quiet), and the headline the batch closes with."""

from __future__ import annotations

from typing import Callable

from alems.measure.quiet import wait_for_quiet

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


def wait_quiet(timeout_s: float, log: Callable[[str], None]) -> bool:
    """Wait up to `timeout_s` for a quiet machine (alems.measure.quiet); on timeout the run
    goes ahead and its row says it was not quiet."""
    quiet, waited, why = wait_for_quiet(timeout_s)
    if not quiet:
        log(f"machine not quiet after {waited:.0f} s ({why}); running anyway, the run is "
            "flagged")
    return quiet


def headline_text(conn, group_id: str, arm: str = "agentic") -> str:
    """The overall tax line, the same as `alems summary`'s and the report's first line
    (`arm`: another non-linear arm against linear, e.g. react)."""
    from alems.analysis.tax import format_headline, headline_tax

    return format_headline(headline_tax(conn, group_id, arm=arm))


def closing_caveats(conn, group_id: str, arms: list[str]) -> tuple[bool, list[str]]:
    """(energy estimated?, the caveats of the arms' headlines): what `alems summary` shows
    first under the same headlines (summary_warnings.headline_caveats), from the runs
    table without pandas."""
    from alems.analysis.summary_warnings import headline_caveats
    from alems.analysis.tax import headline_tax
    from alems.store.reads import run_conditions

    runs = run_conditions(conn, group_id)
    estimate = any(r["energy_source"] == "estimate" for r in runs)
    rows = [headline_tax(conn, group_id, arm=arm) for arm in arms]
    return estimate, headline_caveats(rows, [r for r in runs if r["quiet"] == 0])
