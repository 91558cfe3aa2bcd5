"""Refuse (and record) imports of named packages for a test: proves that a code path never
imports a heavy SDK, whatever other tests imported before (their modules are hidden)."""

from __future__ import annotations

import importlib.abc
import sys


class RefuseImports(importlib.abc.MetaPathFinder):
    def __init__(self, names):
        self.names, self.tried = set(names), []

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.names:
            self.tried.append(name)
            raise ImportError(f"{name} refused by the test")
        return None


def refuse_imports(monkeypatch, *names: str) -> RefuseImports:
    """Hide `names` from sys.modules and refuse their import until the test ends."""
    for name in list(sys.modules):
        if name.split(".")[0] in names:
            monkeypatch.delitem(sys.modules, name)
    guard = RefuseImports(names)
    monkeypatch.setattr(sys, "meta_path", [guard, *sys.meta_path])
    return guard
