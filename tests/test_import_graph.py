"""The project's import graph: no cycle (lazy imports inside functions count), the layering of its top-level
packages (the core ``open_instruct`` <- ``eval`` <- ``replication``; the command-line tools on top, imported by none),
the core knows no method, and MoS and the baselines never import each other."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("open_instruct", "eval", "replication")  # each may import the ones before it, never one after it
TOOLS = ("bench", "data/samples")  # folders of standalone scripts; the top-level *.py are scripts as well
# The one import against the layering: the old command name ``python -m open_instruct.replicate`` runs the harness.
ALIASES = {("open_instruct.replicate.__main__", "replication.__main__")}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The project modules ``path`` imports anywhere in its body (functions included)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names)
    return {m for m in found if m in modules and m != name}


def project_files() -> list[Path]:
    files = [p for layer in LAYERS for p in (ROOT / layer).rglob("*.py")]
    files += [p for tool in TOOLS for p in (ROOT / tool).rglob("*.py")] + sorted(ROOT.glob("*.py"))
    return [p for p in files if "__pycache__" not in p.parts]


def import_graph() -> dict[str, set[str]]:
    files = project_files()
    modules = {module_name(p) for p in files}
    return {module_name(p): imports_of(p, modules) for p in files}


def layer(module: str) -> int:
    """The module's place in LAYERS; the tools come after every package."""
    top = module.split(".")[0]
    return LAYERS.index(top) if top in LAYERS else len(LAYERS)


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports of a later layer (or of a tool) by an earlier one, less the ALIASES; a tool may import any package
    but no tool, other than from its own folder."""
    bad = []
    for src, dsts in graph.items():
        for dst in dsts:
            tool_import = layer(dst) == len(LAYERS) and dst.rpartition(".")[0] != src.rpartition(".")[0]
            if (layer(dst) > layer(src) or tool_import) and (src, dst) not in ALIASES:
                bad.append(f"{src} imports {dst}")
    return sorted(bad)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_is_read():
    graph = import_graph()
    assert "open_instruct.lowrank.layer" in graph["open_instruct.mos.layer"]
    assert "open_instruct.mos" in graph["open_instruct.methods"]
    assert "eval.cli" in graph["eval.mmlu.run_eval"] and "open_instruct.errors" in graph["eval.cli"]
    assert "replication.grid" in graph["replication.__main__"] and "eval.loglik" in graph["replication.score"]
    assert "open_instruct.tiny" in graph["bench.throughput"] and "open_instruct.summarize" in graph["mmlu_summarize"]
    assert graph["open_instruct.replicate.__main__"] == {"replication.__main__"}


def test_layering_violations_are_found():
    assert layering_violations({"open_instruct.a": {"eval.b"}, "eval.b": {"replication.c", "open_instruct.a"},
                                "replication.c": {"eval.b", "open_instruct.a", "mmlu_summarize"},
                                "bench.x": {"bench.y", "replication.c"}}) == [
        "eval.b imports replication.c", "open_instruct.a imports eval.b", "replication.c imports mmlu_summarize"]
    assert layering_violations({"open_instruct.replicate.__main__": {"replication.__main__"}}) == []


def test_packages_are_layered():
    """The core imports neither eval nor replication, eval does not import replication, nothing imports a tool."""
    bad = layering_violations(import_graph())
    assert not bad, "; ".join(bad)


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize(("importer", "forbidden"), [
    ("open_instruct.lowrank", ("open_instruct.mos", "open_instruct.baselines", "open_instruct.methods")),
    ("open_instruct.mos", ("open_instruct.baselines", "open_instruct.methods")),
    ("open_instruct.baselines", ("open_instruct.mos", "open_instruct.methods")),
])
def test_layering(importer, forbidden):
    bad = sorted(f"{src} imports {dst}" for src, dsts in import_graph().items()
                 if src == importer or src.startswith(importer + ".")
                 for dst in dsts if any(dst == f or dst.startswith(f + ".") for f in forbidden))
    assert not bad, "; ".join(bad)
