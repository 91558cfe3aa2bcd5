"""The package version (kept apart so the instrument can name it without importing the
public API that alems/__init__.py loads)."""

__version__ = "0.1.0"


def code_fingerprint() -> str:
    """A hash of this installation's Python sources and schema: what a result
    computed by this code and stored (store.summaries) is valid for. A change to any module
    — not only a version bump — makes such results stale. Computed once per process."""
    global _FINGERPRINT
    if _FINGERPRINT is None:
        import hashlib
        from pathlib import Path

        root = Path(__file__).resolve().parent
        h = hashlib.sha256(__version__.encode())
        for path in sorted(root.rglob("*")):
            if path.suffix in (".py", ".sql") and "__pycache__" not in path.parts:
                h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
        _FINGERPRINT = h.hexdigest()[:32]
    return _FINGERPRINT


_FINGERPRINT: str | None = None
