"""Session fixtures: every family's tiny model folder, built once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.families.families import FAMILIES, save_family_model


@pytest.fixture(scope="session")
def family_dirs(tmp_path_factory, embedded_dir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    return {f.slug: save_family_model(root / f.slug, f, embedded_dir) for f in FAMILIES}
