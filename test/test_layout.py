"""The package's shape, checked: every import runs down the layers of docs/architecture.md, and no
library package grows past a dozen modules."""

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "roboscape_r_ros"

# Lowest first; a module may import its own layer and those below it. The names are top-level
# modules and packages of roboscape_r_ros.
LAYERS = [
    {"errors", "config", "files", "stats", "profiling", "distributed", "runs", "parameters", "devices", "markdown"},
    {"contract", "envs", "perception"},
    {"data"},
    {"world_model"},
    {"imagination"},
    {"rl"},
    {"export", "view"},
    {"runtime"},
    {"launching"},
    {"nodes", "msg", "commands", "cli", "__init__"},
]
LAYER = {name: rank for rank, names in enumerate(LAYERS) for name in names}
MAX_MODULES = 12
# One module per `roboscape-r` command, whatever their number (cli.COMMANDS).
ONE_MODULE_PER_ENTRY = {"commands"}


def unit(path: Path) -> str:
    """The top-level module or package of roboscape_r_ros that a file belongs to."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def imported_units(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module] + (
                [f"{node.module}.{a.name}" for a in node.names] if node.module == "roboscape_r_ros" else []
            )
        elif isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        else:
            continue
        names |= {m.split(".")[1] for m in modules if m.startswith("roboscape_r_ros.")}
    return names


def test_every_import_runs_down_the_layers():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = unit(path)
        assert here in LAYER, f"{path.relative_to(PACKAGE)}: {here} is in no layer of this test"
        for there in imported_units(ast.parse(path.read_text())):
            assert there in LAYER, f"{path.relative_to(PACKAGE)} imports {there}, which is in no layer"
            if LAYER[there] > LAYER[here]:
                upward.append(f"{path.relative_to(PACKAGE)} -> {there}")
    assert not upward, upward


def test_no_library_package_holds_more_than_a_dozen_modules():
    crowded = {}
    for folder in [PACKAGE, *(p for p in PACKAGE.rglob("*") if (p / "__init__.py").exists())]:
        if folder.name in ONE_MODULE_PER_ENTRY or "__pycache__" in folder.parts:
            continue
        modules = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
        if len(modules) > MAX_MODULES:
            crowded[str(folder.relative_to(PACKAGE.parent))] = len(modules)
    assert not crowded, crowded


def test_every_node_file_is_as_thin_as_ros_examples_allow():
    """Nodes convert messages and call runtime classes; a node file past 250 lines holds domain logic."""
    long = {p.name: n for p in (PACKAGE / "nodes").glob("*.py") if (n := len(p.read_text().splitlines())) > 250}
    assert not long, long


def test_no_committed_result_names_a_path_of_the_machine_it_was_made_on():
    """docs/results/*.json are read on other machines: paths there are relative (ROS topic names such
    as "/wm/observation" are not paths)."""
    machine_path = re.compile(r"(?<![\w.\-])(?:/(?:work|root|tmp|home|Users|check|opt|mnt|var)/|[A-Za-z]:\\\\)")
    results = sorted((PACKAGE.parent / "docs" / "results").glob("*.json"))
    leaking = [p.name for p in results if machine_path.search(p.read_text())]
    assert not leaking, leaking


def test_the_tests_share_code_through_the_helpers_package_alone():
    """test/ holds test_*.py files and conftest.py; the code they share is in test/helpers, not beside them."""
    tests = PACKAGE.parent / "test"
    loose = sorted(p.name for p in tests.glob("*.py") if not p.name.startswith("test_") and p.name != "conftest.py")
    assert not loose and (tests / "helpers" / "__init__.py").is_file(), loose
