"""Push an export folder to a Hugging Face hub repository - private unless asked otherwise.

All network traffic goes through one object with three methods (`create_repo`, `repo_info`, `create_commit`, the
`huggingface_hub.HfApi` signatures), so tests inject a recorder and nothing is uploaded. The token is never handled
here: HfApi reads `HF_TOKEN` or the login cache by itself; tunesmith only asks whether one exists, to fail before a
long export instead of after it, and never prints, logs or writes it.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Protocol

from tunesmith.errors import first_line
from tunesmith.export.naming import ExportError

log = logging.getLogger(__name__)


class HubApi(Protocol):
    def create_repo(self, repo_id: str, *, private: bool, repo_type: str, exist_ok: bool): ...

    def repo_info(self, repo_id: str, *, repo_type: str): ...

    def create_commit(self, repo_id: str, operations, *, commit_message: str, repo_type: str): ...


def check_repo_id(repo_id: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}", repo_id or ""):
        raise ExportError(f"--push-to-hub {repo_id!r}: write it as user/name (letters, digits, - _ .)")


def default_api() -> HubApi:
    """HfApi, after checking that a token is available (HF_TOKEN or `hf auth login`)."""
    from huggingface_hub import HfApi, constants, get_token

    from tunesmith.offline import hub_reachable

    if get_token() is None:
        raise ExportError("--push-to-hub needs a Hugging Face token: export HF_TOKEN=... or run `hf auth login` "
                          "(tunesmith never stores it)")
    if not hub_reachable():  # else the hub client retries for a minute, after the whole export
        raise ExportError(f"--push-to-hub: the hub ({constants.ENDPOINT}) cannot be reached from this machine; "
                          "export without --push-to-hub now and upload the folder later with `hf upload USER/NAME "
                          "FOLDER`")
    return HfApi()


def files_to_push(folder: Path) -> list[str]:
    """Every regular file of the export, as repo paths; hidden and temporary files stay home."""
    files = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and not any(p.startswith(".") for p in rel.parts) and not path.name.endswith(".tmp"):
            files.append(rel.as_posix())
    return files


def push_folder(folder: Path, repo_id: str, private: bool = True, api: HubApi | None = None) -> str:
    """Create (or reuse) `repo_id` and upload `folder` as one commit; return the repository URL."""
    from huggingface_hub import CommitOperationAdd
    from huggingface_hub.errors import HfHubHTTPError

    check_repo_id(repo_id)
    api = api or default_api()
    files = files_to_push(folder)
    if not files:
        raise ExportError(f"{folder}: nothing to push")
    try:
        api.create_repo(repo_id, private=private, repo_type="model", exist_ok=True)
        # create_repo(exist_ok=True) leaves an existing repo's visibility alone: never upload a private-by-default
        # export into a repository the whole world can already read.
        if private and not getattr(api.repo_info(repo_id, repo_type="model"), "private", True):
            raise ExportError(f"{repo_id} already exists and is public; pass --public to push to it anyway, "
                              "or choose another name")
        operations = [CommitOperationAdd(path_in_repo=f, path_or_fileobj=str(folder / f)) for f in files]
        api.create_commit(repo_id, operations, commit_message="Upload model exported by tunesmith",
                          repo_type="model")
    except ExportError:
        raise
    except Exception as e:  # noqa: BLE001 - an HTTP error, or the network gone mid-upload (httpx, OSError, ...)
        first = first_line(e)
        what = "" if isinstance(e, HfHubHTTPError) else f"{type(e).__name__}: "
        raise ExportError(f"push to {repo_id} failed: {what}{first}; the export itself is complete in {folder}, "
                          "upload it with `hf upload` once this is fixed") from None
    log.info("pushed %d files to %s (%s)", len(files), repo_id, "private" if private else "public")
    return f"https://huggingface.co/{repo_id}"
