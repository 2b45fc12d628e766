"""The README's Python example runs as written."""

import re
from pathlib import Path


def test_readme_python_example_runs():
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no python example"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_readme_demo_commands_name_existing_configs_and_run_ids():
    import ast
    import json
    import shlex

    root = Path(__file__).resolve().parents[1]
    text = (root / "README.md").read_text()
    demo = text.split("## Try it on the embedded demo", 1)[1]
    block = re.search(r"```bash\n(.*?)```", demo, flags=re.S).group(1)
    commands = [shlex.split(line) for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    runs = [c for c in commands if c[:4] == ["python", "-m", "monai.bundle", "run"]]
    assert [c[4] for c in runs] == ["training", "inference", "evaluating"]
    for command in runs:
        value = command[command.index("--config_file") + 1]
        files = ast.literal_eval(value) if value.startswith("[") else [value]
        merged = {}
        for name in files:
            merged.update(json.loads((root / name).read_text()))
        assert command[4] in merged, f"{command[4]} is not an id of {files}"
