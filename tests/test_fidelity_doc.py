"""docs/fidelity.md stays true: every symbol and config id it cites exists and every test it names is defined."""

import importlib
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: ``disyre_monai.module.Class.method`` or ``disyre_monai.module.MAPPING['key']``
PYTHON_SYMBOL = r"`(disyre_monai(?:\.\w+)+)(?:\['(\w+)'\])?`"
#: ``bundle/configs/train.json#id#sub_id#0``
CONFIG_ID = r"`(bundle/configs/\w+\.json)#([\w#]+)`"


def resolve_symbol(dotted: str, key: str | None = None):
    """The object a dotted path names: the longest importable module prefix, then attributes (and a mapping key)."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            node = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for name in parts[split:]:
            node = getattr(node, name)
        return node[key] if key else node
    raise ModuleNotFoundError(dotted)


def resolve_config_id(path: str, config_id: str):
    node = json.loads((ROOT / path).read_text())
    for part in config_id.split("#"):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def test_fidelity_table_cites_existing_symbols_config_ids_and_tests():
    text = (ROOT / "docs" / "fidelity.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| ---")]
    assert len(rows) > 40, "one row per released setting"
    symbols, config_ids = re.findall(PYTHON_SYMBOL, text), re.findall(CONFIG_ID, text)
    assert len(symbols) > 20 and len(config_ids) > 20
    for dotted, key in symbols:
        resolve_symbol(dotted, key or None)  # raises naming what is missing
    for path, config_id in config_ids:
        resolve_config_id(path, config_id)
    assert not re.findall(r"`(?:disyre_monai|bundle/configs|scripts)/[\w/.]+:\d+`", text), "cite symbols, not lines"
    tests = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    for name in set(re.findall(r"`(test_\w+)`", text)):
        assert re.search(rf"def {name}\b", tests), f"docs/fidelity.md names a test that does not exist: {name}"
    assert "](docs/fidelity.md)" in (ROOT / "README.md").read_text()


def test_the_resolvers_fail_on_what_does_not_exist():
    import pytest

    assert resolve_symbol("disyre_monai.metrics.protocols.PROTOCOLS", "disyre").name == "disyre"
    with pytest.raises(AttributeError):
        resolve_symbol("disyre_monai.transforms.corruption.RandDisyreCorruption.no_such_method")
    with pytest.raises(KeyError):
        resolve_config_id("bundle/configs/train.json", "corruption#no_such_key")
    assert resolve_config_id("bundle/configs/train.json", "corruption#_target_").endswith("RandDisyreCorruptiond")
