"""The package's layers: imports point down, never up, and never in a circle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SERVICE = Path(__file__).parents[2] / "service"

# Lowest first. A module may import from its own layer and the ones below it
# (docs/architecture.md draws the same map).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("service", "service.errors"),
    ("service.protocol",),
    ("service.config", "service.keyfiles", "service.log", "service.policy"),
    ("service.handler", "service.signers", "service.ops", "service.review"),
    ("service.dispatch",),
    ("service.process", "service.setup"),
    ("service.cli", "service.arguments", "service.__main__"),
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(SERVICE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(SERVICE.rglob("*.py"))}


def _layer(module: str) -> int:
    best, best_len = -1, -1
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and len(prefix) > best_len and prefix != "service":
                best, best_len = rank, len(prefix)
    if best == -1 and module == "service":
        return 0
    assert best != -1, f"{module} is in no layer: add it to LAYERS"
    return best


def _imports(module: str) -> set[str]:
    """Every `service` module this one imports, anywhere in the file."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("service"))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if not node.module.startswith("service"):
                continue
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    found.discard(module)
    return found


GRAPH = {module: _imports(module) for module in MODULES}


def test_every_module_has_a_layer() -> None:
    """Each module under service/ belongs to exactly one named layer."""
    for module in MODULES:
        assert 0 <= _layer(module) < len(LAYERS)


def test_no_module_imports_from_a_higher_layer() -> None:
    """Imports (including type-only and function-level ones) never point up."""
    upward = [
        f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})"
        for module, targets in GRAPH.items()
        for target in sorted(targets)
        if _layer(target) > _layer(module)
    ]

    assert upward == []


def _package_of(module: str) -> str:
    return (
        module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    )


def test_there_is_no_import_cycle() -> None:
    """The module graph is acyclic (a package's re-exports aside)."""

    def edges(module: str) -> set[str]:
        # a package's __init__ re-exporting its own modules is not a cycle
        return {t for t in GRAPH[module] if _package_of(t) != module or t == module}

    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges(module)):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(MODULES):
        if module not in state:
            visit(module, [module])

    assert cycles == []


def test_the_layer_test_sees_an_upward_import() -> None:
    """The checker itself: a handler importing the worker would be reported."""
    assert _layer("service.process.worker") > _layer("service.handler")
    assert _layer("service.protocol.nkeys") < _layer("service.policy.loader")


def test_importing_the_sans_io_core_pulls_in_no_io() -> None:
    """`import service.handler` loads neither nats, aiohttp nor IO modules of ours."""
    code = (
        "import sys, service.handler; "
        "print('\\n'.join(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('service', 'nats', 'aiohttp'))))"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code],
            check=True,
            capture_output=True,
            text=True,
            cwd=SERVICE.parent,
        ).stdout.split()
    )

    assert not any(m.split(".")[0] in ("nats", "aiohttp") for m in loaded)
    allowed = (
        "service.errors",
        "service.protocol",
        "service.policy",
        "service.handler",
    )
    outside = {
        m
        for m in loaded - {"service"}
        if not m.startswith(allowed) or m == "service.policy.jwks"
    }
    assert outside == set()
