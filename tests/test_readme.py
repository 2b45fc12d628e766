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


def test_readme_code_map_names_existing_modules_objects_and_config_ids():
    """The code map stays true when code moves: every module path, class and config id it names exists."""
    import importlib
    import json

    import monai.engines
    import monai.transforms

    root = Path(__file__).resolve().parents[1]
    text = (root / "README.md").read_text()
    section = text.split("## Code map", 1)[1].split("\n## ", 1)[0]
    names = set(re.findall(r"`([^`\s]+)`", section))
    modules = {n for n in names if n.endswith(".py")}
    assert modules and all((root / "disyre_monai" / m).is_file() for m in modules), \
        sorted(m for m in modules if not (root / "disyre_monai" / m).is_file())
    folders = {n for n in names if n.endswith("/") and not n.startswith("disyre_monai")}
    assert all((root / "disyre_monai" / f).is_dir() for f in folders), folders
    configs = {n: json.loads((root / n).read_text()) for n in names if n.startswith("bundle/configs/")}
    assert len(configs) == 3
    train, infer = configs["bundle/configs/train.json"], configs["bundle/configs/inference.json"]
    for config_id in (n for n in names if "#" in n):
        node = train
        for part in config_id.split("#"):
            node = node[part]
    for key in ("data", "dataset", "evaluator", "postprocessing", "preprocessing"):
        assert key in infer
    packages = [importlib.import_module(f"disyre_monai.{p}") for p in
                ("commands.bundle", "data", "dicom", "engines", "failures", "handlers", "inferers", "io", "metrics",
                 "networks", "schedulers", "synthetic", "transforms", "visualize", "visualize.report_figures")]
    known = {n for module in (*packages, monai.transforms, monai.engines) for n in dir(module)}
    known |= set(dir(importlib.import_module("disyre_monai.metrics.report")))
    known |= {*train, *infer, *importlib.import_module("disyre_monai.inferers").INFERENCE_METHODS}  # config keys
    objects = {n for n in names if re.fullmatch(r"[A-Z]\w+|[a-z]+_[a-z_]+", n)}
    assert objects and objects <= known, sorted(objects - known)
