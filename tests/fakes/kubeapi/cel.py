"""A small CEL evaluator for CRD `x-kubernetes-validations` rules.

The real server compiles rules with cel-go; here the common subset is interpreted so that a
CRD's cross-field rules (e.g. `self.maxReplicas >= self.minReplicas`) reject objects as they
would on a cluster. A rule this subset cannot parse is skipped rather than guessed at.

Supported: literals, `self`/`oldSelf`, field access, indexing, `has()`, `size()`, `int()`,
`string()`, `double()`, methods startsWith/endsWith/contains/matches/size/all/exists/
exists_one, `! - * / % + - < <= > >= == != in && || ?:`.
"""

from __future__ import annotations

import re
from typing import Any

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<num>\d+\.\d+|\d+)(?P<unsigned>u)?
    | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<op>&&|\|\||==|!=|<=|>=|[-+*/%<>!?:.,()\[\]{}])
    | (?P<id>[A-Za-z_][A-Za-z0-9_]*)
    )""", re.VERBOSE)


class Unsupported(Exception):
    """The rule uses CEL this interpreter does not know; the caller skips it."""


class _Missing:
    pass


MISSING = _Missing()


def tokenize(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise Unsupported(f"cannot tokenize at {text[pos:pos + 10]!r}")
        pos = m.end()
        if m.group("num") is not None:
            n = m.group("num")
            out.append(("lit", float(n) if "." in n else int(n)))
        elif m.group("str") is not None:
            out.append(("lit", bytes(m.group("str")[1:-1], "utf-8").decode("unicode_escape")))
        elif m.group("op") is not None:
            out.append(("op", m.group("op")))
        elif m.group("id") is not None:
            ident = m.group("id")
            if ident in ("true", "false"):
                out.append(("lit", ident == "true"))
            elif ident == "null":
                out.append(("lit", None))
            elif ident == "in":
                out.append(("op", "in"))
            else:
                out.append(("id", ident))
    return out


class _Parser:
    """Recursive descent producing nested tuples, evaluated by `_eval`."""

    def __init__(self, tokens: list[tuple[str, Any]]) -> None:
        self.t = tokens
        self.i = 0

    def peek(self) -> tuple[str, Any] | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def accept(self, op: str) -> bool:
        tok = self.peek()
        if tok is not None and tok[0] == "op" and tok[1] == op:
            self.i += 1
            return True
        return False

    def expect(self, op: str) -> None:
        if not self.accept(op):
            raise Unsupported(f"expected {op}")

    def parse(self) -> Any:
        node = self.ternary()
        if self.peek() is not None:
            raise Unsupported("trailing tokens")
        return node

    def ternary(self) -> Any:
        cond = self.binary(0)
        if self.accept("?"):
            a = self.ternary()
            self.expect(":")
            b = self.ternary()
            return ("?", cond, a, b)
        return cond

    LEVELS: tuple[tuple[str, ...], ...] = (
        ("||",), ("&&",), ("==", "!=", "<", "<=", ">", ">=", "in"), ("+", "-"), ("*", "/", "%"))

    def binary(self, level: int) -> Any:
        if level == len(self.LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while True:
            tok = self.peek()
            if tok is not None and tok[0] == "op" and tok[1] in self.LEVELS[level]:
                self.i += 1
                left = (tok[1], left, self.binary(level + 1))
            else:
                return left

    def unary(self) -> Any:
        if self.accept("!"):
            return ("not", self.unary())
        if self.accept("-"):
            return ("neg", self.unary())
        return self.postfix()

    def postfix(self) -> Any:
        node = self.primary()
        while True:
            if self.accept("."):
                tok = self.peek()
                if tok is None or tok[0] != "id":
                    raise Unsupported("field name expected")
                self.i += 1
                if self.accept("("):
                    node = ("method", tok[1], node, self.args())
                else:
                    node = ("field", node, tok[1])
            elif self.accept("["):
                idx = self.ternary()
                self.expect("]")
                node = ("index", node, idx)
            else:
                return node

    def args(self) -> list[Any]:
        out: list[Any] = []
        if self.accept(")"):
            return out
        while True:
            out.append(self.ternary())
            if self.accept(")"):
                return out
            self.expect(",")

    def primary(self) -> Any:
        tok = self.peek()
        if tok is None:
            raise Unsupported("unexpected end")
        self.i += 1
        if tok[0] == "lit":
            return ("lit", tok[1])
        if tok[0] == "id":
            if self.accept("("):
                return ("call", tok[1], self.args())
            return ("var", tok[1])
        if tok == ("op", "("):
            node = self.ternary()
            self.expect(")")
            return node
        if tok == ("op", "["):
            items: list[Any] = []
            if not self.accept("]"):
                while True:
                    items.append(self.ternary())
                    if self.accept("]"):
                        break
                    self.expect(",")
            return ("list", items)
        raise Unsupported(f"unexpected {tok}")


def compile_rule(rule: str) -> Any:
    return _Parser(tokenize(rule)).parse()


def evaluate(program: Any, env: dict[str, Any]) -> Any:
    return _eval(program, env)


def _field(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(name, MISSING)
    raise Unsupported(f"no field {name}")


def _eval(n: Any, env: dict[str, Any]) -> Any:
    op = n[0]
    if op == "lit":
        return n[1]
    if op == "var":
        if n[1] not in env:
            raise Unsupported(f"unknown variable {n[1]}")
        return env[n[1]]
    if op == "list":
        return [_eval(x, env) for x in n[1]]
    if op == "field":
        value = _field(_eval(n[1], env), n[2])
        if value is MISSING:
            raise Unsupported(f"no such key: {n[2]}")
        return value
    if op == "index":
        base, idx = _eval(n[1], env), _eval(n[2], env)
        try:
            return base[idx]
        except (KeyError, IndexError, TypeError) as e:
            raise Unsupported("bad index") from e
    if op == "not":
        return not _eval(n[1], env)
    if op == "neg":
        return -_eval(n[1], env)
    if op == "?":
        return _eval(n[2], env) if _eval(n[1], env) else _eval(n[3], env)
    if op == "||":
        return bool(_eval(n[1], env)) or bool(_eval(n[2], env))
    if op == "&&":
        return bool(_eval(n[1], env)) and bool(_eval(n[2], env))
    if op == "call":
        return _call(n[1], n[2], env)
    if op == "method":
        return _method(n[1], n[2], n[3], env)
    a, b = _eval(n[1], env), _eval(n[2], env)
    ops: dict[str, Any] = {
        "==": lambda: a == b, "!=": lambda: a != b, "<": lambda: a < b, "<=": lambda: a <= b,
        ">": lambda: a > b, ">=": lambda: a >= b, "in": lambda: a in b, "+": lambda: a + b,
        "-": lambda: a - b, "*": lambda: a * b,
        "/": lambda: a // b if isinstance(a, int) and isinstance(b, int) else a / b,
        "%": lambda: a % b,
    }
    if op not in ops:
        raise Unsupported(op)
    try:
        return ops[op]()
    except TypeError as e:
        raise Unsupported(str(e)) from e


def _call(name: str, args: list[Any], env: dict[str, Any]) -> Any:
    if name == "has":
        (arg,) = args
        if arg[0] != "field":
            raise Unsupported("has() needs a field")
        return _field(_eval(arg[1], env), arg[2]) is not MISSING
    values = [_eval(a, env) for a in args]
    if name == "size":
        return len(values[0])
    if name == "int":
        return int(values[0])
    if name == "double":
        return float(values[0])
    if name == "string":
        return str(values[0])
    raise Unsupported(name)


def _method(name: str, target: Any, args: list[Any], env: dict[str, Any]) -> Any:
    obj = _eval(target, env)
    if name in ("all", "exists", "exists_one"):
        var = args[0]
        if var[0] != "var":
            raise Unsupported("macro variable")
        items = list(obj.keys()) if isinstance(obj, dict) else list(obj)
        results = [bool(_eval(args[1], {**env, var[1]: item})) for item in items]
        if name == "all":
            return all(results)
        if name == "exists":
            return any(results)
        return sum(results) == 1
    values = [_eval(a, env) for a in args]
    if name == "size":
        return len(obj)
    if name == "startsWith":
        return str(obj).startswith(values[0])
    if name == "endsWith":
        return str(obj).endswith(values[0])
    if name == "contains":
        return values[0] in str(obj)
    if name == "matches":
        return re.search(values[0], str(obj)) is not None
    raise Unsupported(name)
