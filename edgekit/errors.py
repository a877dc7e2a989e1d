"""The one exception type a user sees: a single sentence naming what is wrong and what to do."""


class EdgekitError(Exception):
    """A user-facing error. The CLI prints str(err) as one line and exits with status 2."""


class UnsupportedModelError(EdgekitError):
    """The model uses something edgekit cannot compile (an op, a type, a shape)."""


class DoesNotFitError(EdgekitError):
    """The model needs more flash or RAM than the target has."""


class ToolMissingError(EdgekitError):
    """An external tool (compiler, emulator) is not installed."""
