"""The exceptions emollm raises on bad input.

Every error a user can cause is an :class:`EmollmError`, so ``except EmollmError`` catches all of them.
Messages say what was wrong, the value seen, and what is accepted.
"""


class EmollmError(Exception):
    """Base class of every error emollm raises for bad input or a missing resource."""


class ConfigError(EmollmError, ValueError):
    """An argument or configuration value is not one of the accepted values."""


class AudioError(EmollmError, ValueError):
    """Audio that cannot be used: unreadable, empty, silent, non-finite, too short or too long."""


class DataError(EmollmError, ValueError):
    """A dataset, manifest or annotation file is missing or malformed."""


class ModelError(EmollmError, RuntimeError):
    """A model cannot be found, installed, converted or loaded."""


class AlignmentError(EmollmError, ValueError):
    """A transcript or TextGrid cannot be aligned to the audio."""
