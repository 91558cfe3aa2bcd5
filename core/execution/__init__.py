"""See core/__init__.py: the guide's module path, from a checkout only."""
