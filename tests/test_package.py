"""The package's shape: the README's house of imports (floors) holds every module and every import, the import
graph has no cycles, modules import without deprecation warnings."""

import ast
import importlib
import re
import warnings
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "disyre_monai"


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (``__init__`` files named by their package)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules that importing ``name`` may run.

    Every ``import`` statement counts, at module level or inside functions (a lazy import still ties the two
    modules together), except under ``if TYPE_CHECKING:``. Importing ``a.b.c`` also runs the packages ``a.b``
    and ``a``; those that are not packages of ``name`` itself are counted too, since a package's ``__init__``
    that imports back into ``name`` is a cycle Python only survives by luck of import order.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(node) for branch in ast.walk(tree) if isinstance(branch, ast.If)
               and "TYPE_CHECKING" in ast.unparse(branch.test) for stmt in branch.body for node in ast.walk(stmt)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    targets.add(f"{base}.{alias.name}")
                elif base in modules:
                    targets.add(base)
    own_packages = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
    for target in list(targets):
        parts = target.split(".")
        targets.update(p for p in (".".join(parts[:i]) for i in range(1, len(parts)))
                       if p in modules and p not in own_packages)
    targets.discard(name)
    return targets


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_package_import_graph_has_no_cycles():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert graph["disyre_monai.data.datalist"] >= {"disyre_monai.data.demo"}, "the graph must see real imports"
    assert _cycles(graph) == []


def test_the_cycle_finder_sees_a_lazy_import_cycle():
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_every_module_imports_without_deprecation_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        for name in _modules():
            if not name.startswith("disyre_monai.apps"):  # the MONAI Label extra may be absent
                importlib.import_module(name)


def _floors() -> tuple[dict[str, int], set[str]]:
    """The README code map's table: top-level package (``""`` for the top-level modules) -> floor, and the modules
    it lists (paths relative to ``disyre_monai/``)."""
    section = (PACKAGE.parent / "README.md").read_text(encoding="utf-8").split("## Code map", 1)[1]
    floors, listed = {}, set()
    rows = re.findall(r"^\| (\d) \| (\(top level\)|`\w+/`) \| [^|]+ \| (.+) \|$", section, re.M)
    for floor, package, modules in rows:
        floors["" if package == "(top level)" else package.strip("`/")] = int(floor)
        listed |= set(re.findall(r"`([\w/]+\.py)`", modules))
    return floors, listed


def _floor_of(module: str, floors: dict[str, int]) -> int:
    parts = module.split(".")
    if len(parts) == 1:  # the package's own __init__: it imports the stages for users, and nothing imports it back
        return max(floors.values()) + 1
    return floors[parts[1]] if parts[1] in floors else floors[""]


def test_the_readme_code_map_lists_every_module_of_the_package():
    _, listed = _floors()
    modules = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
               if p.name != "__init__.py" and p.relative_to(PACKAGE).parts[0] != "bundle"}
    assert listed == modules, {"missing from the README": sorted(modules - listed),
                               "not in the package": sorted(listed - modules)}


def test_no_import_runs_up_the_house():
    floors, _ = _floors()
    assert floors[""] == 0 and floors["commands"] == floors["apps"] == max(floors.values())
    modules = _modules()
    upward = sorted(f"{name} (floor {_floor_of(name, floors)}) imports {target} (floor {_floor_of(target, floors)})"
                    for name, path in modules.items() if name != "disyre_monai"
                    for target in _imports(name, path, modules) if target != "disyre_monai"
                    and _floor_of(target, floors) > _floor_of(name, floors))
    assert upward == []


def test_the_floor_check_sees_an_upward_import():
    floors, _ = _floors()
    assert _floor_of("disyre_monai.metrics.report", floors) < _floor_of("disyre_monai.visualize.overlay", floors)
    assert _floor_of("disyre_monai.io", floors) == 0 < _floor_of("disyre_monai.commands.cli", floors)
