"""Resolve a run's configuration: a preset name or a YAML file, then key=value overrides, validated.

It stands above both config.py (the dataclasses, coercion and validation) and presets.py (the named
presets, built from config.py), so neither of those imports the other back. The resolved config is
printed with --dry-run and saved as config.yaml in every run directory.
"""

from __future__ import annotations

import difflib
import os

import yaml

from .config import Config, apply_dict, parse_overrides, set_value
from .config_validate import validate
from .errors import ConfigError
from .presets import PRESETS, get_preset


def load_config(name_or_file: str | None = None, overrides: list[str] | None = None) -> Config:
    """Preset name or YAML file (which may name a `preset` to start from), then key=value overrides;
    validated. None means the quickstart preset."""
    name_or_file = name_or_file or "quickstart"
    if name_or_file in PRESETS:
        cfg = get_preset(name_or_file)
    elif name_or_file.endswith((".yaml", ".yml")) or os.path.sep in name_or_file:
        if not os.path.isfile(name_or_file):
            raise ConfigError(
                f"config file '{name_or_file}' does not exist; pass a preset name ({', '.join(PRESETS)}) or a YAML file"
            )
        try:
            with open(name_or_file) as fh:
                data = yaml.safe_load(fh) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"config file '{name_or_file}' is not valid YAML: {str(err).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file '{name_or_file}' must hold a mapping of sections")
        base = data.get("preset")
        cfg = get_preset(base) if base else Config()
        cfg.name = data.get("name", base or os.path.splitext(os.path.basename(name_or_file))[0])
        apply_dict(cfg, data, source=name_or_file)
    else:
        close = difflib.get_close_matches(name_or_file, list(PRESETS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown preset '{name_or_file}'{hint} (presets: {', '.join(PRESETS)}; or a .yaml file)")
    for key, value in parse_overrides(overrides or []):
        set_value(cfg, key, value)
    validate(cfg)
    return cfg


__all__ = ["load_config"]
