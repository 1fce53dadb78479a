"""The config reference page (docs/config.md), generated from the config dataclasses.

A key's type and default come from its dataclass field; its one-line description is the trailing
`# ...` comment of that field in the source of the module that defines the section's dataclass (read
with tokenize and ast, so the page follows the code). `scoremix presets --reference docs/config.md`
rewrites the page; tests/test_config_reference.py fails when the page is stale or a field has no comment.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import sys
import tokenize
import typing
from dataclasses import dataclass

PAGE_COMMAND = "scoremix presets --reference docs/config.md"
MISSING = "(no description)"


@dataclass
class Key:
    name: str
    type: str
    default: str
    description: str


@dataclass
class Section:
    names: list[str]  # config sections sharing this dataclass, e.g. ["generator", "score"]
    class_name: str
    keys: list[Key]


def field_comments(source: str, class_name: str) -> dict[str, str]:
    """{field name: its trailing comment} for the fields of dataclass `class_name` in `source`.

    A trailing comment is a `#` comment with code before it on the same line; for a field written over
    several lines, the trailing comments of all its lines are joined. Fields without one are absent."""
    trailing: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT and tok.line[: tok.start[1]].strip():
            trailing[tok.start[0]] = tok.string.lstrip("#").strip()
    tree = ast.parse(source)
    node = next((n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == class_name), None)
    if node is None:
        raise LookupError(f"class {class_name} is not defined in this source")
    out = {}
    for stmt in node.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            parts = [trailing[line] for line in range(stmt.lineno, stmt.end_lineno + 1) if trailing.get(line)]
            if parts:
                out[stmt.target.id] = " ".join(parts)
    return out


def _class_comments(cls) -> dict[str, str]:
    source = inspect.getsource(sys.modules[cls.__module__])
    return field_comments(source, cls.__name__)


def format_type(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:
        inner = [format_type(a) for a in args if a is not type(None)]
        return " or ".join(inner) + (" or null" if type(None) in args else "")
    if origin in (list, typing.List):
        return f"list[{format_type(args[0])}]" if args else "list"
    return getattr(hint, "__name__", str(hint))


def format_value(value) -> str:
    """A default as it is written in YAML or in key=value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _keys(cls) -> list[Key]:
    hints = typing.get_type_hints(cls)
    comments = _class_comments(cls)
    return [
        Key(f.name, format_type(hints[f.name]), format_value(_default(f)), comments.get(f.name, MISSING))
        for f in dataclasses.fields(cls)
    ]


def sections(config_cls=None) -> list[Section]:
    """The config's sections in field order; sections that share a dataclass form one entry. Plain
    (non-dataclass) fields of the top-level config form a first section named ''."""
    if config_cls is None:
        from .config import Config as config_cls
    hints = typing.get_type_hints(config_cls)
    comments = _class_comments(config_cls)
    top: list[Key] = []
    by_class: dict[type, Section] = {}
    for f in dataclasses.fields(config_cls):
        cls = hints[f.name]
        if dataclasses.is_dataclass(cls):
            if cls in by_class:
                by_class[cls].names.append(f.name)
            else:
                by_class[cls] = Section([f.name], cls.__name__, _keys(cls))
        else:
            top.append(Key(f.name, format_type(cls), format_value(_default(f)), comments.get(f.name, MISSING)))
    out = list(by_class.values())
    if top:
        out.insert(0, Section([""], config_cls.__name__, top))
    return out


def missing_descriptions(config_cls=None) -> list[str]:
    """Dotted keys whose field has no trailing comment."""
    out = []
    for section in sections(config_cls):
        for key in section.keys:
            if key.description == MISSING:
                out.extend(f"{name}.{key.name}" if name else key.name for name in section.names)
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _preset_rows() -> list[str]:
    from .presets import PRESETS

    rows = ["| preset | data | method | networks | steps | batch | what |", "|---|---|---|---|---|---|---|"]
    for name, make in PRESETS.items():
        cfg = make()
        doc = inspect.getdoc(make) or ""
        summary = " ".join(doc.split("\n\n")[0].split())
        net = cfg.score if cfg.method.name == "edm" else cfg.generator
        if net.arch == "mlp":
            arch = f"mlp {net.hidden}x{net.depth}"
        else:
            arch = f"{net.arch} {net.channels}x{format_value(net.channel_mult)}"
        data = cfg.data.source + (" (cond.)" if cfg.data.conditional else "")
        rows.append(
            f"| `{name}` | {data} | {cfg.method.name} | {arch} | {cfg.train.steps:,} | "
            f"{cfg.data.batch_size} | {_cell(summary)} |"
        )
    return rows


def reference_page(config_cls=None) -> str:
    """The text of docs/config.md."""
    lines = [
        "# Configuration reference",
        "",
        f"<!-- Generated by `{PAGE_COMMAND}` from the config dataclasses in scoremix/config.py",
        "     (descriptions: each field's trailing comment). Do not edit by hand; tests/test_config_reference.py",
        "     fails when this page is out of date. -->",
        "",
        "A run's configuration is a preset or a YAML file, then `key=value` overrides, applied in that order",
        "and validated before anything runs; the resolved config is saved as `config.yaml` in the run folder",
        "(`scoremix train ... --dry-run` prints it). A key is written as its dotted path (`score.hidden=128`)",
        "or, where the name is unique, as its leaf (`steps=5000`). In YAML, sections are mappings and `preset:`",
        "names the starting point:",
        "",
        "```yaml",
        "preset: ring8",
        "name: my-ring",
        "train: {steps: 30000, seed: 1}",
        "method: {gan: true, score_alpha: paper}",
        "```",
        "",
        "`null` is written `none` on the command line; lists as `[1,2,2]` or `1,2,2`. "
        "`scoremix presets --keys` lists the keys,",
        "`scoremix presets --show NAME` prints a preset in full. See [guide.md](guide.md) for how the keys are",
        "used.",
        "",
    ]
    for section in sections(config_cls):
        if section.names == [""]:
            title = "Top level"
        else:
            title = " and ".join(f"`{n}`" for n in section.names)
        lines += [f"## {title}", ""]
        if len(section.names) > 1:
            lines += [
                f"The sections {', '.join(f'`{n}`' for n in section.names)} share one dataclass "
                f"(`{section.class_name}`), so each has every key below.",
                "",
            ]
        lines += ["| key | type | default | description |", "|---|---|---|---|"]
        for key in section.keys:
            names = ", ".join(f"`{n}.{key.name}`" if n else f"`{key.name}`" for n in section.names)
            lines.append(f"| {names} | {_cell(key.type)} | `{_cell(key.default)}` | {_cell(key.description)} |")
        lines.append("")
    lines += [
        "## Presets",
        "",
        "Networks: the generator's (diffusion presets: the denoiser's), as `mlp WIDTHxDEPTH` or "
        "`ARCH CHANNELSx[MULTIPLIERS]`. `steps` are iterations (critic steps).",
        "",
    ]
    lines += _preset_rows()
    lines.append("")
    return "\n".join(lines)


def write_reference(path: str, echo=print) -> int:
    """Write the page to `path` ('-': print it); returns the CLI exit code."""
    text = reference_page()
    missing = missing_descriptions()
    if path == "-":
        sys.stdout.write(text)
    else:
        from .checkpoint import atomic_write_bytes
        from .errors import ScoremixError

        try:
            atomic_write_bytes(path, text.encode())
        except OSError as err:
            raise ScoremixError(f"cannot write '{path}' ({err.strerror or err}); pick a writable path") from None
        echo(f"wrote {path}")
    if missing:
        print(
            f"warning: {len(missing)} config keys have no description (a trailing # comment on their field): "
            f"{', '.join(missing)}",
            file=sys.stderr,
        )
    return 0
