"""artq.yml.example shows every setting, each with a comment, and loads as it stands."""

from __future__ import annotations

import typing
from dataclasses import fields, is_dataclass
from pathlib import Path

import yaml

from artq.config import ApplicationAlertSettings, ApplicationSettings, Settings, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "artq.yml.example"
LISTS = {"applications": ApplicationSettings, "alerts.applications": ApplicationAlertSettings}
OVERRIDES = "alerts.applications[]."  # an override takes the keys of `alerts` itself: shown there


def setting_keys(cls=Settings, prefix="") -> set[str]:
    hints = typing.get_type_hints(cls)
    keys = set()
    for f in fields(cls):
        if f.name == "config_path":
            continue
        key = prefix + f.name
        keys.add(key)
        if is_dataclass(hints[f.name]):
            keys |= setting_keys(hints[f.name], key + ".")
        elif key in LISTS:
            keys |= setting_keys(LISTS[key], key + "[].")
    return keys


def example_keys(node, prefix="") -> set[str]:
    keys = set()
    if isinstance(node, dict):
        for k, v in node.items():
            keys.add(prefix + k)
            if not (prefix + k).endswith("plausible"):  # free-form: metric -> {min, max}
                keys |= example_keys(v, prefix + k + ".")
    elif isinstance(node, list) and node:
        keys |= example_keys(node[0], prefix.rstrip(".") + "[].")
    return keys


def test_the_example_shows_every_setting():
    shown = example_keys(yaml.safe_load(EXAMPLE.read_text()))
    missing = {k for k in setting_keys() - shown
               if not (k.startswith(OVERRIDES) and "alerts." + k[len(OVERRIDES):] in shown)}
    assert not missing, f"artq.yml.example lacks {sorted(missing)}"
    assert not shown - setting_keys() - {"source.plausible.art", "source.plausible.cpm"}


def test_every_key_line_has_a_comment():
    for n, line in enumerate(EXAMPLE.read_text().splitlines(), start=1):
        body = line.split("#", 1)[0].strip()
        if body and body.rstrip(":").lstrip("- ") and ":" in body and "#" not in line:
            raise AssertionError(f"artq.yml.example line {n} has no comment: {line!r}")


def test_the_example_loads(tmp_path):
    settings = load_settings(EXAMPLE, env={"ARTQ_HOME": str(tmp_path), "ARTQ_SOURCE_CLIENT_SECRET": "s3cret-from-env"})
    assert settings.applications[0].name == "ABP" and settings.dashboard.cycle_minute == 5
    assert settings.alerts.applications[0].compare == "upper"
