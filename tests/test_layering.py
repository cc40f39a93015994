"""The package's imports point one way: faces -> policies, backends, observers -> the contract.

Every import in src/relaykit is read with ``ast``, including the ones inside functions and under
``if TYPE_CHECKING:`` (an import hidden in a function still ties two modules together), and
the graph must have no cycle and no arrow from a room to one above it. What each room may
import is the table ``MAY_IMPORT`` below; docs/design.md draws the same floors.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import relaykit

SRC = Path(relaykit.__file__).parent
PACKAGE = "relaykit"

# Rooms, ground floor first. A room may import itself and what it lists here.
MAY_IMPORT: dict[str, set[str]] = {
    "_support": set(),
    "contract": {"_support"},
    "stores": {"contract", "_support"},
    "middleware": {"stores", "contract", "_support"},
    # A strategy may reuse a policy's parts (Hedge spends a RetryBudget); no policy knows one.
    "strategies": {"middleware", "stores", "contract", "_support"},
    "backends": {"contract", "_support"},
    "observability": {"contract", "_support"},
    "testing": {"backends", "contract", "_support"},
}
FACES = {"facade", "config", "decorators", "cli", "presets", "__init__"}
# The old paths the README and docs show, each a re-export of one module of the contract, a
# backend or an observer.
PUBLIC_PATHS = {"types", "errors", "events", "stream", "classify", "middleware.logging"}
LOWER = set(MAY_IMPORT)


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((PACKAGE, *parts))


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def resolve(name: str) -> str:
    """The module an imported dotted name lives in (``relaykit.x.Name`` -> ``relaykit.x``)."""
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def imports_of(module: str) -> Iterator[tuple[str, int]]:
    """Each relaykit module ``module`` imports, anywhere in its file, with the line."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    yield resolve(alias.name), node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            if source.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                full = f"{source}.{alias.name}"
                yield (full if full in MODULES else resolve(source)), node.lineno


GRAPH: dict[str, dict[str, int]] = {
    module: {target: line for target, line in imports_of(module) if target != module}
    for module in MODULES
}


def room(module: str) -> str:
    rest = module.removeprefix(PACKAGE).lstrip(".")
    if rest in PUBLIC_PATHS:
        return "public path"
    return rest.split(".")[0] if rest else "__init__"


def where(module: str, target: str) -> str:
    return f"{MODULES[module].relative_to(SRC.parent)}:{GRAPH[module][target]} imports {target}"


def test_every_module_is_in_a_room_the_table_knows() -> None:
    unknown = sorted(m for m in MODULES if room(m) not in LOWER | FACES | {"public path"})
    assert unknown == [], "add these to MAY_IMPORT or FACES (and to docs/design.md)"


def test_no_room_imports_one_above_it() -> None:
    wrong = [
        where(module, target)
        for module in MODULES
        if room(module) in LOWER
        for target in GRAPH[module]
        if room(target) != room(module) and room(target) not in MAY_IMPORT[room(module)]
    ]
    assert wrong == []


def test_the_contract_imports_no_policy_backend_observer_or_face() -> None:
    # Said once more on its own: the rule the whole layout exists for.
    wrong = [
        where(module, target)
        for module in MODULES
        if room(module) == "contract"
        for target in GRAPH[module]
        if room(target) not in {"contract", "_support"}
    ]
    assert wrong == []


def test_a_public_path_only_re_exports_its_module() -> None:
    for module in MODULES:
        if room(module) == "public path":
            assert len(GRAPH[module]) == 1, f"{module} should re-export exactly one module"
            (target,) = GRAPH[module]
            assert room(target) in LOWER, f"{module} re-exports {target}, not a lower room"


def test_the_imports_form_no_cycle() -> None:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(MODULES):
        if module not in state:
            visit(module)
    assert cycles == [], "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_the_walk_sees_function_local_imports() -> None:
    # The graph must not go blind to an import inside a function: Relay.from_config imports
    # the config loader only when called, and that arrow has to be in it.
    relay = f"{PACKAGE}.facade.relay"
    assert any(room(target) == "config" for target in GRAPH[relay])


# namedtuple's public API has leading underscores.
_NAMEDTUPLE = {"_asdict", "_fields", "_make", "_replace"}


def _private_names_defined(tree: ast.AST) -> set[str]:
    """Every name a module defines, assigns (``x._y = ...``) or lists (``__slots__``)."""
    own: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            own.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            own.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            own.add(node.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            own.add(node.value)  # __slots__ entries, PrivateAttr names
    return own


def test_no_module_reads_another_modules_private_names() -> None:
    # A private name is its module's business: read from elsewhere it is a hidden coupling
    # (imported as ``from x import _name``, or read as ``thing._name`` where this module never
    # defines ``_name``).
    wrong = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        own = _private_names_defined(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE):
                wrong += [
                    f"{module}:{node.lineno} imports {node.module}.{alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_") and not alias.name.startswith("__")
                ]
            elif (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and node.attr not in own | _NAMEDTUPLE
                # A class's own attributes, inherited ones too, are its own business.
                and not (isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"})
            ):
                wrong.append(f"{module}:{node.lineno} reads {ast.unparse(node)}")
    assert wrong == []
