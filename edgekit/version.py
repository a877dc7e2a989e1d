"""edgekit's version (one place: the package, the CLI, pyproject and every export read it)."""
__version__ = "0.1.0"
