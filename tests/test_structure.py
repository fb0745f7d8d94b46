"""The code's structure: imports run one way, and the wheel carries the SQL.

The import graph counts every import, also those inside functions: a lazy import that
closes a circle is a circle all the same.
"""

import ast
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("decayrec", "decayrec_tools", "flows", "tasks", "deployments")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the project's modules it imports (a package import counts as its
    __init__; `from pkg import name` counts as pkg.name when that is a module)."""
    files = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
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
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_has_no_cycles():
    graph = import_graph()
    assert "decayrec.lake.features" in graph and "flows.nightly" in graph
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_lazy_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def stage(module: str) -> str:
    """decayrec.lake.ingest -> decayrec.lake; decayrec.config -> decayrec.config."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "decayrec" else parts[0]


def test_the_stages_import_one_way():
    """Folded to stages (decayrec.lake, decayrec.models, ..., flows, tasks), the graph
    still has no circle: a stage never reaches back to one that uses it."""
    graph = import_graph()
    stages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        stages.setdefault(stage(module), set()).update(
            stage(t) for t in targets if stage(t) != stage(module)
        )
    for targets in list(stages.values()):
        for t in targets:
            stages.setdefault(t, set())
    assert cycles(stages) == []


def test_only_the_cli_reaches_the_orchestration_and_the_tooling():
    outside = ("flows", "tasks", "deployments", "decayrec_tools")
    offenders = {
        module: sorted(t for t in targets if t.split(".")[0] in outside)
        for module, targets in import_graph().items()
        if module.startswith("decayrec.") and module != "decayrec.cli"
    }
    assert {m: t for m, t in offenders.items() if t} == {}


@pytest.mark.slow
def test_a_wheel_install_loads_the_sql(tmp_path):
    """`pip install .` (not only -e) ships the SQL: build the wheel, install it into a
    folder of its own and read a SQL file through the installed package."""
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(tmp_path / "dist"), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("decayrec-*.whl")
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".sql")}
    in_repo = {f"decayrec/sql/{p.relative_to(ROOT / 'sql')}" for p in (ROOT / "sql").rglob("*.sql")}
    assert shipped == in_repo

    target = tmp_path / "site"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target)]
        + [str(wheel)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    probe = (
        "import decayrec.sqlfiles as s; "
        "print(s.__file__); print(s.SQL_DIR); "
        "print(len(s.sql('features/decayed_interactions')))"
    )
    env = {k: v for k, v in os.environ.items() if k != "DECAYREC_SQL_DIR"}
    env["PYTHONPATH"] = str(target)
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    module_file, sql_dir, n_chars = done.stdout.split()
    assert Path(module_file).is_relative_to(target)
    assert Path(sql_dir) == target / "decayrec" / "sql"
    assert int(n_chars) == len((ROOT / "sql/features/decayed_interactions.sql").read_text())
