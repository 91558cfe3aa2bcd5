"""The local provider offloads `gpu_layers` to the GPU through llama.cpp's n_gpu_layers."""

from __future__ import annotations

import sys
import types

import pytest

from alems.errors import AlemsError
from alems.experiment.providers.local import LocalProvider


def test_gpu_layers_reach_llama_cpp(tmp_path, monkeypatch):
    seen = {}

    class Llama:
        def __init__(self, **kw):
            seen.update(kw)

    monkeypatch.setitem(sys.modules, "llama_cpp", types.SimpleNamespace(Llama=Llama))
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + b"\0" * 16)
    p = LocalProvider(model, gpu_layers=12, n_threads=1)
    p.check()
    assert seen["n_gpu_layers"] == 12 and p.gpu_layers == 12
    LocalProvider(model, n_threads=1).check()
    assert seen["n_gpu_layers"] == 0          # default: CPU only, as before


def test_gpu_layers_validated():
    with pytest.raises(AlemsError, match="gpu_layers"):
        LocalProvider(gpu_layers=-2)
