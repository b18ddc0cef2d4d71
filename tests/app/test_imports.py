"""The house's arrows go one way (docs/architecture.md): web → services → providers
(`payments/`, `messaging/`) and meters (`meters/`). No circle in the import graph of app/,
meters/, payments/, messaging/ and standins/ (every import, at module level or in a function);
the providers and meters never import the web stack, and the real providers never import their
stand-ins (`standins/`, served only in the sandbox)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("app", "meters", "payments", "messaging", "standins")
WEB = ("app.main", "app.stack", "app.web", "app.console", "app.resident", "standins",
       "app.orders.views", "app.cli", "app.demo")


def import_graph() -> dict[str, set[str]]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            modules[name.removesuffix(".__init__")] = path
    graph = {}
    for name, path in modules.items():
        found = set()
        tree = ast.parse(path.read_text("utf-8"))
        typing_only = {id(n) for block in ast.walk(tree) if _is_type_checking(block)
                       for n in ast.walk(block)}  # `if TYPE_CHECKING:` imports run never
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            found |= {t for t in targets if t in modules and t != name}
        graph[name] = found
    return graph


def _is_type_checking(node) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Name)
            and node.test.id == "TYPE_CHECKING")


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_circle_in_the_import_graph():
    assert circles(import_graph()) == []


def test_the_check_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_providers_and_meters_never_import_the_web():
    wrong = {(name, target) for name, targets in import_graph().items()
             if name.startswith(("payments", "meters", "messaging"))
             for target in targets if target.startswith(WEB)}
    assert wrong == set()


def test_real_providers_never_import_the_standins_nor_the_app():
    graph = import_graph()
    assert {name for name in graph if name.startswith("standins.")} >= {
        "standins.sms", "standins.wechat_messages", "standins.alipay", "standins.wechat_pay",
        "standins.wechat_oauth", "standins.mounts"}  # the check sees them
    wrong = {(name, target) for name, targets in graph.items()
             if name.startswith(("payments", "messaging"))
             for target in targets if target.startswith("standins")}
    assert wrong == set()
    assert {(name, target) for name, targets in graph.items() if name.startswith("messaging")
            for target in targets if target.startswith("app")} == set()
