"""Where edgekit's C lives: templates/ and firmware/ beside the package in a checkout, inside it
(edgekit/_data) when installed."""
from __future__ import annotations

from importlib import resources
from pathlib import Path


def resource_dir(name: str) -> Path:
    """templates/ or firmware/: beside the package in a checkout, inside it when installed."""
    checkout = Path(__file__).resolve().parent.parent / name
    if checkout.is_dir():
        return checkout
    return Path(str(resources.files("edgekit") / "_data" / name))
