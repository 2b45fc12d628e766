"""docs/fidelity.md stays true: every file:line it cites exists and every test it names is defined."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_fidelity_table_cites_existing_lines_and_tests():
    text = (ROOT / "docs" / "fidelity.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| ---")]
    assert len(rows) > 40, "one row per released setting"
    tests = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    cited = re.findall(r"`((?:disyre_monai|bundle/configs|scripts)/[\w/.]+):(\d+)`", text)
    assert cited
    for path, line in cited:
        lines = (ROOT / path).read_text().splitlines()
        assert int(line) <= len(lines) and lines[int(line) - 1].strip(), f"{path}:{line} is not a line of code"
    for name in set(re.findall(r"`(test_\w+)`", text)):
        assert re.search(rf"def {name}\b", tests), f"docs/fidelity.md names a test that does not exist: {name}"
    assert "](docs/fidelity.md)" in (ROOT / "README.md").read_text()
