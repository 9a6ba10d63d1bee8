"""Named classes held as "module:Class" import paths: the one table behind the stage, method and export-format
registries. Listing the names (config validation, `--help`, the Web UI) imports nothing; a class is imported the
first time it is used."""

from __future__ import annotations

import importlib


class Registry(dict):
    """name -> "module:Class". `unknown` is the one-line error for a name that is not here, formatted with `name`
    and `choices`; `error` its exception class."""

    def __init__(self, paths: dict[str, str], unknown: str, error: type[Exception]):
        super().__init__(paths)
        self.unknown, self.error = unknown, error
        self._loaded: dict[str, type] = {}

    def register(self, name: str, cls: str | type) -> None:
        """Add (or replace) `name`: a class, or its "module:Class" path."""
        self[name] = cls if isinstance(cls, str) else f"{cls.__module__}:{cls.__qualname__}"
        if isinstance(cls, str):
            self._loaded.pop(name, None)
        else:
            self._loaded[name] = cls

    def load(self, name: str) -> type:
        if name not in self:
            raise self.error(self.unknown.format(name=name, choices=", ".join(self)))
        if name not in self._loaded:
            module, _, cls = self[name].partition(":")
            self._loaded[name] = getattr(importlib.import_module(module), cls)
        return self._loaded[name]
