"""Every family through train -> chat -> serve -> merge -> GGUF -> llama.cpp -> Modelfile (tests/families/matrix.py).
bench/family_matrix.py runs the same checks and writes the README's table."""

from __future__ import annotations

import pytest
import torch

from tests.families.families import FAMILIES
from tests.families.matrix import COLUMNS, check_family


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: a second intra-op thread only waits for a busy core (see tests/export/conftest.py)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("family", FAMILIES, ids=[f.slug for f in FAMILIES])
def test_family_trains_chats_serves_merges_and_exports(family, family_dirs, tmp_path):
    verdict = check_family(family, family_dirs[family.slug], tmp_path)
    missing_llama_cpp = verdict["llama.cpp"] == "llama-cpp-python not installed"
    wrong = {column: verdict[column] for column in COLUMNS
             if verdict[column] != "ok" and not (column == "llama.cpp" and missing_llama_cpp)}
    assert not wrong, wrong
    if missing_llama_cpp:
        pytest.skip("llama-cpp-python is not installed: the GGUF was not run by llama.cpp (the README's test command "
                    "installs it)")
