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


def check_config(config, problems: list[str] | None = None) -> None:
    """Check a dataclass config at parse time: each field's ``choices``, plus ``problems`` its caller found.

    Collects every problem and raises once (a typo in one option is reported with all the others, before
    any work starts). Call it from the dataclass's ``__post_init__``.

    Raises:
        ConfigError: naming each bad field, the value seen and what is accepted.

    >>> from dataclasses import dataclass, field
    >>> @dataclass
    ... class Run:
    ...     mode: str = field(default="score", metadata={"choices": ["score", "generate"]})
    ...     def __post_init__(self):
    ...         check_config(self)
    >>> Run(mode="scor")
    Traceback (most recent call last):
    ...
    emollm.errors.ConfigError: Run: mode is 'scor'; accepted: score, generate
    """
    import dataclasses

    found = []
    for f in dataclasses.fields(config):
        choices = f.metadata.get("choices")
        value = getattr(config, f.name)
        if choices is not None and value is not None and value not in choices:
            found.append(f"{f.name} is {value!r}; accepted: {', '.join(map(str, choices))}")
    found += list(problems or [])
    if found:
        raise ConfigError(f"{type(config).__name__}: " + "; ".join(found))
