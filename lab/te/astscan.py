"""Static reading of Python sources with `ast` only (nothing here imports the code it reads).

Shared by the TE extractor (TE's own modules), the Accelerate extractor and the tests that hold the doctor's TE
code against the observations: which names a module binds, function signatures, the decision list of an
availability function, and which TE names a piece of code uses (through import aliases) under which guards.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from typing import Any

TE_ROOT = "transformer_engine"


def top_level_statements(tree: ast.Module) -> Iterator[ast.stmt]:
    """Module-level statements, including those inside top-level if/try blocks (not inside defs)."""
    stack: list[ast.stmt] = list(reversed(tree.body))
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If | ast.Try | ast.With):
            inner: list[ast.stmt] = list(node.body)
            for extra in ("orelse", "finalbody"):
                inner += getattr(node, extra, []) or []
            for handler in getattr(node, "handlers", []) or []:
                inner += handler.body
            stack.extend(reversed(inner))


def bound_names(tree: ast.Module) -> set[str]:
    """Names a module binds at its top level (what `module.NAME` can reach, besides submodules)."""
    names: set[str] = set()
    for node in top_level_statements(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import):
            for a in node.names:
                names.add(a.asname or a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            for a in node.names:
                if a.name != "*":
                    names.add(a.asname or a.name)
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                names.update(_target_names(t))
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            names.update(_target_names(node.target))
    return names


def _target_names(t: ast.expr) -> set[str]:
    if isinstance(t, ast.Name):
        return {t.id}
    if isinstance(t, ast.Tuple | ast.List):
        return set().union(*(_target_names(e) for e in t.elts)) if t.elts else set()
    return set()


def definitions(tree: ast.Module) -> dict[str, ast.FunctionDef | ast.ClassDef]:
    return {n.name: n for n in top_level_statements(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)}


def init_attributes(node: ast.ClassDef) -> list[str]:
    """The attributes `__init__` of a class assigns on `self` (under any branch), sorted."""
    init = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
    names: set[str] = set()
    for n in ast.walk(init) if init else ():
        targets = (n.targets if isinstance(n, ast.Assign)
                   else [n.target] if isinstance(n, ast.AnnAssign | ast.AugAssign) else [])
        names |= {t.attr for t in targets if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name)
                  and t.value.id == "self"}
    return sorted(names)


def _params(args: ast.arguments, skip_first: bool) -> list[dict[str, Any]]:
    positional = list(args.posonlyargs) + list(args.args)
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    out = [{"name": a.arg, "default": ast.unparse(d) if d is not None else None}
           for a, d in zip(positional, defaults, strict=True)]
    if skip_first and out:
        out = out[1:]
    for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        out.append({"name": a.arg, "default": ast.unparse(d) if d is not None else None, "keyword_only": True})
    if args.vararg:
        out.append({"name": "*" + args.vararg.arg})
    if args.kwarg:
        out.append({"name": "**" + args.kwarg.arg})
    return out


def dataclass_fields(node: ast.ClassDef) -> dict[str, str | None]:
    return {s.target.id: (ast.unparse(s.value) if s.value is not None else None)
            for s in node.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)}


def is_dataclass(node: ast.ClassDef) -> bool:
    return any("dataclass" in ast.unparse(d) for d in node.decorator_list)


def deprecation_message(fn: ast.FunctionDef | ast.Module) -> str | None:
    """The message of a `warnings.warn(...)` call directly in a function's (or module's) body, verbatim."""
    for stmt in fn.body:
        call = stmt.value if isinstance(stmt, ast.Expr) else None
        if isinstance(call, ast.Call) and ast.unparse(call.func) in ("warnings.warn", "warn") and call.args:
            msg = call.args[0]
            if isinstance(msg, ast.Constant) and isinstance(msg.value, str):
                return msg.value
            return ast.unparse(msg)
    return None


def signature(node: ast.FunctionDef | ast.ClassDef) -> dict[str, Any]:
    """Parameters of a function, or of a class (its dataclass fields, else its __init__)."""
    if isinstance(node, ast.FunctionDef):
        return {"kind": "function", "params": _params(node.args, skip_first=False),
                "deprecated": deprecation_message(node)}
    init = next((s for s in node.body if isinstance(s, ast.FunctionDef) and s.name == "__init__"), None)
    if init is not None:
        return {"kind": "class", "params": _params(init.args, skip_first=True), "deprecated": deprecation_message(init)}
    if is_dataclass(node):
        return {"kind": "dataclass", "params": [{"name": k, "default": v} for k, v in dataclass_fields(node).items()],
                "deprecated": None}
    return {"kind": "class", "params": None, "deprecated": None}


def decisions(fn: ast.FunctionDef) -> list[dict[str, Any]]:
    """Each return of a function with the if-conditions that lead to it (source text, `not (...)` for else)."""
    out: list[dict[str, Any]] = []

    def walk(stmts: list[ast.stmt], conds: list[str]) -> None:
        for s in stmts:
            if isinstance(s, ast.If):
                test = ast.unparse(s.test)
                walk(s.body, conds + [test])
                walk(s.orelse, conds + [f"not ({test})"])
            elif isinstance(s, ast.Return):
                out.append({"if": conds, **_returned(s.value)})
            elif isinstance(s, ast.Try | ast.With | ast.For | ast.While):
                walk(s.body, conds)

    walk(fn.body, [])
    return out


def _returned(value: ast.expr | None) -> dict[str, Any]:
    if (isinstance(value, ast.Tuple) and len(value.elts) == 2 and isinstance(value.elts[0], ast.Constant)
            and isinstance(value.elts[0].value, bool)):
        reason = value.elts[1]
        text = reason.value if isinstance(reason, ast.Constant) else ast.unparse(reason)
        return {"ok": value.elts[0].value, "reason": text}
    return {"returns": ast.unparse(value) if value is not None else None}


def called_names(fn: ast.FunctionDef) -> list[str]:
    return sorted({n.func.id for n in ast.walk(fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)})


# --- which TE names a piece of code uses -------------------------------------------------------------------------


class _UseScanner(ast.NodeVisitor):
    """Finds uses of `transformer_engine...` names through import aliases, with the if-guards around each use.

    An alias is bound by `import transformer_engine.X as a`, `import transformer_engine.X` (alias is the chain) or
    `from transformer_engine.X import Y [as a]` (Y is a module or a name; recorded as a use of X.Y). Aliases are
    tracked per function (imports inside functions are how Accelerate reaches TE) plus the module level.
    """

    def __init__(self) -> None:
        self.uses: list[dict[str, Any]] = []
        self.calls: list[dict[str, Any]] = []
        self.scopes: list[dict[str, str]] = [{}]
        self.guards: list[str] = []
        self.func: list[str] = []

    def _alias(self, name: str) -> str | None:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        return None

    def _use(self, module: str, name: str, how: str) -> None:
        self.uses.append({"module": module, "name": name, "how": how, "function": ".".join(self.func) or None,
                          "guards": list(self.guards)})

    def _block(self, stmts: list[ast.stmt]) -> None:
        """Visit statements in order; after `if C: ... return/raise` (no else) the rest runs under `not (C)`."""
        pushed = 0
        for stmt in stmts:
            self.visit(stmt)
            if (isinstance(stmt, ast.If) and not stmt.orelse and stmt.body
                    and isinstance(stmt.body[-1], ast.Return | ast.Raise)):
                self.guards.append(f"not ({ast.unparse(stmt.test)})")
                pushed += 1
        if pushed:
            del self.guards[-pushed:]

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.func.append(node.name)
        self.scopes.append({})
        saved, self.guards = self.guards, []
        for d in node.decorator_list:
            self.visit(d)
        self.visit(node.args)
        self._block(node.body)
        self.guards = saved
        self.scopes.pop()
        self.func.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # noqa: N815

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.func.append(node.name)
        self.generic_visit(node)
        self.func.pop()

    def visit_If(self, node: ast.If) -> None:
        test = ast.unparse(node.test)
        self.visit(node.test)
        self.guards.append(test)
        self._block(node.body)
        self.guards[-1] = f"not ({test})"
        self._block(node.orelse)
        self.guards.pop()

    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            if a.name == TE_ROOT or a.name.startswith(TE_ROOT + "."):
                if a.asname:
                    self.scopes[-1][a.asname] = a.name
                else:
                    self.scopes[-1][TE_ROOT] = TE_ROOT
                parts = a.name.split(".")
                for i in range(2, len(parts) + 1):
                    self._use(".".join(parts[: i - 1]), parts[i - 1], "import")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        mod = node.module or ""
        if node.level == 0 and (mod == TE_ROOT or mod.startswith(TE_ROOT + ".")):
            parts = mod.split(".")
            for i in range(1, len(parts)):
                self._use(".".join(parts[:i]), parts[i], "import")
            for a in node.names:
                self._use(mod, a.name, "import")
                self.scopes[-1][a.asname or a.name] = f"{mod}.{a.name}"

    def _chain(self, node: ast.expr) -> list[str] | None:
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name):
            parts.append(node.id)
            return list(reversed(parts))
        return None

    def visit_Attribute(self, node: ast.Attribute) -> None:
        chain = self._chain(node)
        if chain and self._alias(chain[0]) and isinstance(node.ctx, ast.Load):
            base = self._alias(chain[0]).split(".")
            full = base + chain[1:]
            # Each link of `te.a.b` is an attribute access: te.a (maybe a submodule) and then a.b.
            for i in range(len(base), len(full)):
                self._use(".".join(full[:i]), full[i], "attribute")
            return
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        fn = node.func
        if (isinstance(fn, ast.Name) and fn.id in ("hasattr", "getattr") and len(node.args) >= 2
                and isinstance(node.args[0], ast.Name) and self._alias(node.args[0].id)
                and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
            self._use(self._alias(node.args[0].id), node.args[1].value, fn.id)
        chain = self._chain(fn)
        if chain and self._alias(chain[0]):
            full = self._alias(chain[0]).split(".") + chain[1:]
            self.calls.append({"module": ".".join(full[:-1]), "name": full[-1],
                               "keywords": sorted(k.arg for k in node.keywords if k.arg),
                               "star_kwargs": any(k.arg is None for k in node.keywords),
                               "function": ".".join(self.func) or None, "guards": list(self.guards)})
        self.generic_visit(node)


def te_uses(source: str) -> dict[str, list[dict[str, Any]]]:
    """TE names used by `source` (deduplicated, sorted) and the calls made to TE names with their keywords."""
    scanner = _UseScanner()
    scanner.visit(ast.parse(source))
    return {"uses": _dedupe(scanner.uses), "calls": _dedupe(scanner.calls)}


def _dedupe(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for r in rows:
        seen.setdefault(repr(sorted(r.items())), r)
    return sorted(seen.values(), key=lambda r: (r["module"], r["name"], str(r.get("function")), repr(r)))
