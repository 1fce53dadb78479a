"""docs/config.md is generated from the config dataclasses and must match them; every field needs a description."""

import importlib.util
import os
import sys

from scoremix.cli import main
from scoremix.config import all_keys
from scoremix.config_reference import MISSING, PAGE_COMMAND, field_comments, missing_descriptions, reference_page
from scoremix.presets import PRESETS

PAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "config.md")


def test_docs_config_md_is_current():
    with open(PAGE) as fh:
        on_disk = fh.read()
    assert on_disk == reference_page(), f"docs/config.md is out of date: run `{PAGE_COMMAND}`"


def test_every_config_field_has_a_description():
    missing = missing_descriptions()
    assert not missing, (
        "config fields without a description; add a trailing `# ...` comment to each field in "
        f"scoremix/config.py, then run `{PAGE_COMMAND}`: {', '.join(missing)}"
    )


SOURCE = """
from dataclasses import dataclass, field

@dataclass
class A:
    x: int = 1                 # the x | with a pipe
    # a block comment above a field is not its description
    y: str = "a # b"
    z: list = field(           # first part
        default_factory=list)  # second part
    w: float = 2.0

@dataclass
class B:
    x: int = 2  # B's x
"""


def test_field_comments_reads_trailing_comments_only():
    assert field_comments(SOURCE, "A") == {"x": "the x | with a pipe", "z": "first part second part"}
    assert field_comments(SOURCE, "B") == {"x": "B's x"}


def _module_from_source(tmp_path, name: str, text: str):
    path = tmp_path / f"{name}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_missing_descriptions_and_page_of_a_config_with_shared_sections(tmp_path):
    module = _module_from_source(
        tmp_path,
        "scoremix_refcheck_config",
        """
from __future__ import annotations
import typing
from dataclasses import dataclass, field

@dataclass
class Net:
    width: int = 8                       # layer width
    mult: typing.List[int] = field(default_factory=lambda: [1, 2])
    path: typing.Optional[str] = None    # a file

@dataclass
class Top:
    name: str = "x"                      # run name
    gen: Net = field(default_factory=Net)
    critic: Net = field(default_factory=Net)
""",
    )
    try:
        assert missing_descriptions(module.Top) == ["gen.mult", "critic.mult"]
        page = reference_page(module.Top)
        assert "| `name` | str | `x` | run name |" in page
        assert "| `gen.width`, `critic.width` | int | `8` | layer width |" in page
        assert f"| `gen.mult`, `critic.mult` | list[int] | `[1, 2]` | {MISSING} |" in page
        assert "| `gen.path`, `critic.path` | str or null | `null` | a file |" in page
    finally:
        del sys.modules["scoremix_refcheck_config"]


def test_page_lists_every_key_and_every_preset():
    page = reference_page()
    for key in all_keys():
        assert f"`{key}`" in page, key
    for name in PRESETS:
        assert f"| `{name}` |" in page, name
    # a description with a pipe must not split its table row
    row = next(line for line in page.splitlines() if line.startswith("| `data.source` |"))
    assert row.count(" | ") == 3 and "ring8 \\| grid25" in row


def test_cli_writes_and_prints_the_page(tmp_path, capsys):
    out = tmp_path / "config.md"
    assert main(["presets", "--reference", str(out)]) == 0
    assert out.read_text() == reference_page()
    capsys.readouterr()
    assert main(["presets", "--reference"]) == 0
    assert capsys.readouterr().out == reference_page()
