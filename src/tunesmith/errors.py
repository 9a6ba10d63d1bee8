"""Errors a user can fix. The CLI prints them as one line and exits 2 — never a traceback."""


def first_line(error: BaseException, limit: int = 200) -> str:
    """What a one-line error quotes from a library's exception: its first line, cut at `limit`, or its type name."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__


class TunesmithError(Exception):
    """Base class: the message is complete and actionable on its own."""


class ConfigError(TunesmithError):
    pass


class DataError(TunesmithError):
    pass


class ModelError(TunesmithError):
    pass


class JudgeError(TunesmithError):
    """The A/B judge cannot be used: unreachable endpoint, rejected key, unknown judge model, a reply that is not a
    chat completion."""
