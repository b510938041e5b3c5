"""Go's text/template, the part Docker users write in ``--format``.

Docker's ``--format`` is a Go template over the JSON-shaped object it prints, with
Docker's extra functions (json, join, split, lower, upper, title, pad, truncate). Users
copy such templates from docs and scripts, so we run them rather than a look-alike:
fields (``.A.B``, ``$``), pipelines (``a | b``), parentheses, string and number
literals, ``if``/``else if``/``else``/``range``/``with``/``end``, ``{{-``/``-}}`` trimming,
and Go's builtins (index, len, print, printf, println, eq, ne, lt, le, gt, ge, and,
or, not, slice). A template we cannot parse or run is a :class:`TemplateError`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable


class TemplateError(ValueError):
    pass


# -- values as Go prints them ---------------------------------------------------------

def go_value(value: Any) -> str:
    """Go's ``fmt`` rendering of JSON values: ``[a b]``, ``map[k:v]``, ``<nil>``."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_value(v)}" for k, v in sorted(value.items())) + "]"
    return str(value)


def _truth(value: Any) -> bool:
    return bool(value) if value is not None else False


def _printf(fmt: str, *args: Any) -> str:
    args_iter = iter(args)

    def one(match: re.Match) -> str:
        spec = match[0]
        if spec == "%%":
            return "%"
        value = next(args_iter, None)
        verb = spec[-1]
        if verb in "vs":
            return _pad_spec(spec[1:-1], go_value(value))
        if verb == "q":
            return json.dumps(go_value(value))
        try:
            return ("%" + spec[1:]) % value
        except (TypeError, ValueError) as exc:
            raise TemplateError(f"printf {spec}: {exc}") from None
    return re.sub(r"%[-+ #0]*\d*(?:\.\d+)?[a-zA-Z%]", one, fmt)


def _pad_spec(flags: str, text: str) -> str:
    match = re.fullmatch(r"(-?)(\d*)", flags)
    if not match or not match[2]:
        return text
    width = int(match[2])
    return text.ljust(width) if match[1] else text.rjust(width)


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        try:
            value = value[key] if isinstance(value, dict) else value[int(key)]
        except (KeyError, IndexError, TypeError, ValueError):
            if isinstance(value, dict) or value is None:
                value = None
                continue
            raise TemplateError(f"index {go_value(key)} out of range") from None
    return value


def _compare(op: Callable[[Any, Any], bool]) -> Callable[..., bool]:
    def compare(a: Any, *others: Any) -> bool:
        try:
            return any(op(a, b) for b in others) if op is _eq else op(a, others[0])
        except TypeError:
            raise TemplateError("incompatible types for comparison") from None
    return compare


def _eq(a: Any, b: Any) -> bool:
    return a == b


def _and(*args: Any) -> Any:
    for arg in args:
        if not _truth(arg):
            return arg
    return args[-1]


def _or(*args: Any) -> Any:
    for arg in args:
        if _truth(arg):
            return arg
    return args[-1]


FUNCTIONS: dict[str, Callable[..., Any]] = {
    # Docker's additions (cli/templates/templates.go)
    "json": lambda v: json.dumps(v, ensure_ascii=False, separators=(",", ":")),
    "join": lambda items, sep: sep.join(go_value(i) for i in items or ()),
    "split": lambda text, sep: text.split(sep),
    "lower": lambda text: go_value(text).lower(),
    "upper": lambda text: go_value(text).upper(),
    "title": lambda text: go_value(text).title(),
    "pad": lambda text, left, right: " " * int(left) + go_value(text) + " " * int(right),
    "truncate": lambda text, n: go_value(text)[:int(n)],
    # Go's builtins
    "index": _index,
    "len": lambda v: len(v) if v is not None else 0,
    "slice": lambda v, *i: v[int(i[0]):int(i[1])] if len(i) > 1 else v[int(i[0]):] if i else v,
    "print": lambda *a: "".join(go_value(v) for v in a),
    "println": lambda *a: " ".join(go_value(v) for v in a) + "\n",
    "printf": _printf,
    "eq": _compare(_eq),
    "ne": _compare(lambda a, b: a != b),
    "lt": _compare(lambda a, b: a < b),
    "le": _compare(lambda a, b: a <= b),
    "gt": _compare(lambda a, b: a > b),
    "ge": _compare(lambda a, b: a >= b),
    "and": _and,
    "or": _or,
    "not": lambda v: not _truth(v),
}


# -- lexing ------------------------------------------------------------------------

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOKEN = re.compile(r"""
    \s*(?:
      (?P<str>"(?:[^"\\]|\\.)*") | (?P<raw>`[^`]*`)
    | (?P<num>-?\d+(?:\.\d+)?)
    | (?P<field>(?:\$[A-Za-z0-9_]*)?(?:\.[A-Za-z0-9_]+)+|\.|\$[A-Za-z0-9_]*)
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<punct>[()|,]|:=|=)
    )""", re.X)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise TemplateError(f"unexpected {text[pos:].strip()[:20]!r} in {{{{{text}}}}}")
        kind = match.lastgroup
        out.append((kind, match[kind]))
        pos = match.end()
    return out


# -- parse tree --------------------------------------------------------------------

@dataclass
class _Block:
    keyword: str                       # "if", "elseif", "range", "with" or "" for the root
    pipeline: list | None = None
    variables: tuple[str, ...] = ()    # {{range $i, $v := …}} / {{with $x := …}}
    body: list = field(default_factory=list)
    otherwise: list = field(default_factory=list)
    in_else: bool = False

    def add(self, node: Any) -> None:
        (self.otherwise if self.in_else else self.body).append(node)


def parse(template: str) -> list:
    root = _Block("")
    stack = [root]
    pos, trim_next = 0, False
    for match in _ACTION.finditer(template):
        text = template[pos:match.start()]
        if trim_next:
            text = text.lstrip()
        if match[1]:
            text = text.rstrip()
        stack[-1].add(text)
        pos, trim_next = match.end(), bool(match[3])
        _action(stack, match[2].strip())
    tail = template[pos:]
    if "{{" in tail:
        raise TemplateError("unclosed action")
    stack[-1].add(tail.lstrip() if trim_next else tail)
    if len(stack) > 1:
        raise TemplateError(f"unexpected EOF: {{{{{stack[-1].keyword}}}}} has no {{{{end}}}}")
    return root.body


def _action(stack: list[_Block], text: str) -> None:
    if text.startswith("/*"):
        return  # a comment
    tokens = _tokens(text)
    if not tokens:
        raise TemplateError("missing value for command")
    kind, word = tokens[0]
    if kind == "word" and word in ("if", "range", "with"):
        variables, rest = _declaration(tokens[1:])
        block = _Block(word, _pipeline(rest), variables)
        stack[-1].add(block)
        stack.append(block)
    elif kind == "word" and word == "else":
        block = stack[-1]
        if not block.keyword or block.in_else:
            raise TemplateError("unexpected {{else}}")
        block.in_else = True
        if len(tokens) > 1 and tokens[1] == ("word", "if"):
            nested = _Block("elseif", _pipeline(tokens[2:]))  # ends with its parent's {{end}}
            block.add(nested)
            stack.append(nested)
    elif kind == "word" and word == "end":
        if len(stack) == 1:
            raise TemplateError("unexpected {{end}}")
        while stack[-1].keyword == "elseif":
            stack.pop()
        stack.pop()
    else:
        variables, rest = _declaration(tokens)
        stack[-1].add(_Assign(variables, _pipeline(rest)) if variables else _pipeline(rest))


@dataclass
class _Assign:
    variables: tuple[str, ...]
    pipeline: list


def _declaration(tokens: list) -> tuple[tuple[str, ...], list]:
    """Split ``$a, $b := pipeline`` into the variable names and the pipeline."""
    for i, token in enumerate(tokens):
        if token[0] == "punct" and token[1] in (":=", "="):
            names = tokens[:i:2]
            if not names or any(k != "field" or not v.startswith("$") or "." in v
                                for k, v in names) or len(names) > 2:
                raise TemplateError("bad variable declaration")
            return tuple(v for _, v in names), tokens[i + 1:]
    return (), tokens


def _pipeline(tokens: list) -> list:
    """A list of commands; each command a list of operands (nested pipelines are lists)."""
    commands: list[list] = [[]]
    i = 0
    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "punct" and value == "|":
            commands.append([])
        elif kind == "punct" and value == "(":
            depth, j = 1, i + 1
            while j < len(tokens) and depth:
                depth += {"(": 1, ")": -1}.get(tokens[j][1], 0) if tokens[j][0] == "punct" else 0
                j += 1
            if depth:
                raise TemplateError("unclosed left paren")
            commands[-1].append(("pipe", _pipeline(tokens[i + 1:j - 1])))
            i = j
            continue
        elif kind == "punct":
            raise TemplateError(f"unexpected {value!r} in command")
        else:
            commands[-1].append((kind, value))
        i += 1
    if any(not c for c in commands):
        raise TemplateError("missing command in pipeline")
    return commands


# -- execution ---------------------------------------------------------------------

def render(template: str, data: Any) -> str:
    nodes = parse(template)
    out: list[str] = []
    _run(nodes, data, {"$": data}, out)
    return "".join(out)


def _run(nodes: list, dot: Any, scope: dict, out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, _Assign):
            scope[node.variables[0]] = _eval_pipeline(node.pipeline, dot, scope)
        elif isinstance(node, _Block):
            value = _eval_pipeline(node.pipeline, dot, scope)
            inner = dict(scope)
            if node.keyword == "range":
                items = sorted(value.items()) if isinstance(value, dict) \
                    else list(enumerate(value or ()))
                for key, item in items:
                    if len(node.variables) == 2:
                        inner[node.variables[0]], inner[node.variables[1]] = key, item
                    elif node.variables:
                        inner[node.variables[0]] = item
                    _run(node.body, item, inner, out)
                if not items:
                    _run(node.otherwise, dot, scope, out)
            elif _truth(value):
                if node.variables:
                    inner[node.variables[0]] = value
                _run(node.body, value if node.keyword == "with" else dot, inner, out)
            else:
                _run(node.otherwise, dot, scope, out)
        else:
            out.append(go_value(_eval_pipeline(node, dot, scope)))


def _eval_pipeline(commands: list, dot: Any, scope: dict) -> Any:
    result, have_result = None, False
    for command in commands:
        args = list(command)
        if have_result:
            args.append(("value", result))
        result, have_result = _eval_command(args, dot, scope), True
    return result


def _eval_command(args: list, dot: Any, scope: dict) -> Any:
    kind, value = args[0]
    if kind == "word" and value not in ("true", "false", "nil"):
        function = FUNCTIONS.get(value)
        if function is None:
            raise TemplateError(f'function "{value}" not defined')
        operands = [_operand(a, dot, scope) for a in args[1:]]
        try:
            return function(*operands)
        except TemplateError:
            raise
        except (TypeError, ValueError, AttributeError) as exc:
            raise TemplateError(f"error calling {value}: {exc}") from None
    if len(args) > 1:
        raise TemplateError(f"can't give argument to non-function {value}")
    return _operand(args[0], dot, scope)


def _operand(arg: tuple, dot: Any, scope: dict) -> Any:
    kind, value = arg
    if kind == "value":
        return value
    if kind == "pipe":
        return _eval_pipeline(value, dot, scope)
    if kind == "str":
        return json.loads(value)
    if kind == "raw":
        return value[1:-1]
    if kind == "num":
        return float(value) if "." in value else int(value)
    if kind == "word":
        return {"true": True, "false": False, "nil": None}.get(value)
    if kind == "field":
        if value.startswith("$"):
            name, _, rest = value.partition(".")
            if name not in scope:
                raise TemplateError(f"undefined variable: {name}")
            base, path = scope[name], rest.split(".") if rest else []
        else:
            base, path = dot, value.split(".")[1:] if value != "." else []
        for part in path:
            if isinstance(base, dict):
                base = base.get(part)
            elif base is None:
                return None
            else:
                base = getattr(base, part, None)
        return base
    raise TemplateError(f"unexpected {value!r}")
