"""What the command modules share (cli.py and cli_eval.py import it; it imports neither of them)."""

from __future__ import annotations

import os

from .errors import ScoremixError


def make_output_folder(path: str, option: str) -> None:
    """Create the folder of an output file now, so that a bad path fails before any work is done."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        from .checkpoint import folder_error

        raise ScoremixError(
            f"cannot create the folder of {option} '{path}' ({folder_error(folder, err)}); pick a writable folder"
        ) from None
    if os.path.isdir(path):
        raise ScoremixError(f"{option} '{path}' is a folder; pass a file name")
