"""Log lines said once per process: a run opens its dataset, model and config more than once (doctor reads the
first data file twice, chat opens its model twice), and the user should read how each was understood only once."""

from __future__ import annotations

import logging

_said: set[str] = set()


def log_once(log: logging.Logger, message: str) -> None:
    if message not in _said:
        _said.add(message)
        log.info(message)
