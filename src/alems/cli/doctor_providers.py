"""`alems doctor`'s providers section: each model provider a batch can name, what it would
talk to, whether its key is there, and whether it answers.

A server on this machine or a private network is asked for its model list (GET /models,
two seconds at most, no SDK imported); a remote API is contacted only with
--check-remote (it is the network, and it may bill). The local in-process model is only
looked for (its package and GGUF file), not loaded.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from alems.errors import AlemsError

PROBE_TIMEOUT_S = 2.0


def _local() -> dict:
    from alems.experiment.providers.local import default_model_path

    entry: dict[str, Any] = {
        "name": "local", "target": "in-process llama-cpp-python", "key": "not needed",
        "answers": None, "detail": "loaded by the batch, not here"}
    if importlib.util.find_spec("llama_cpp") is None:
        return {**entry, "ok": False, "detail": "llama-cpp-python is not installed; "
                "pip install 'alems[local]'"}
    try:
        entry["target"] += f", model {default_model_path().name} (or --model PATH)"
    except AlemsError as exc:
        return {**entry, "ok": False, "detail": str(exc)}
    return {**entry, "ok": True}


def _api(name: str, base_url: str | None, check_remote: bool) -> dict:
    from alems.experiment.providers import get_provider
    from alems.experiment.providers.openai_compat import is_private_url, probe_models

    provider: Any = get_provider(name, **({"base_url": base_url} if name == "openai" else {}))
    why = getattr(provider, "resolved_why", "")
    target = provider.describe() + (f" ({why})" if why else "")
    entry: dict[str, Any] = {"name": name, "target": target, "answers": None, "detail": ""}
    try:
        provider.check_key()
    except AlemsError as exc:
        return {**entry, "ok": False, "key": "missing", "detail": str(exc)}
    keyless = getattr(provider, "keyless", False)
    entry["key"] = "not needed" if keyless else "set"
    backend = getattr(provider, "backend", name)
    if backend == "anthropic":
        url = (provider.base_url or "https://api.anthropic.com").rstrip("/") + "/v1"
        headers = {"x-api-key": provider.api_key, "anthropic-version": "2023-06-01"}
    else:
        url = provider.base_url
        headers = {} if keyless else {"Authorization": f"Bearer {provider.api_key}"}
    if not (is_private_url(url) or check_remote):
        return {**entry, "ok": True, "detail": "remote API, not contacted (--check-remote asks "
                "it for its models)"}
    answers, detail = probe_models(url, headers, PROBE_TIMEOUT_S)
    return {**entry, "ok": answers, "answers": answers, "detail": detail}


def providers_section(base_url: str | None = None, check_remote: bool = False) -> list[dict]:
    """One entry per advertised provider (see the module docstring)."""
    from alems.experiment.providers import ADVERTISED_PROVIDERS

    entries = []
    for name in ADVERTISED_PROVIDERS:
        try:
            entries.append(_local() if name == "local" else _api(name, base_url, check_remote))
        except AlemsError as exc:    # e.g. a bad ALEMS_GROQ_BASE_URL: said, not raised
            entries.append({"name": name, "target": "", "key": "", "answers": None,
                            "ok": False, "detail": str(exc)})
    return entries


def render(console, entries: list[dict]) -> None:
    from rich.markup import escape

    console.print("\n[bold]providers[/bold] (what --providers NAME would use; servers on this "
                  "machine are asked for their models, remote APIs only with --check-remote):")
    for e in entries:
        mark = "[green]✓[/green]" if e["ok"] else "[red]✗[/red]"
        key = f"; key {e['key']}" if e["key"] else ""
        console.print(f"  {mark} {e['name']}: {escape(e['target'])}{escape(key)} — "
                      f"{escape(e['detail'])}")
