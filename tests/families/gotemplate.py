"""A small evaluator of Go's text/template, the subset Ollama Modelfile TEMPLATEs use (and more than tunesmith
writes): text, {{ .Field }} / {{ $.Field }} / {{ $var }}, {{ $v := x }} and {{ $v = x }}, if / else if / else /
end, range (with `$i, $m :=`), and the functions eq, ne, not, and, or, len, slice; `{{-` / `-}}` trim spaces.
Enough to check, without Ollama, that a TEMPLATE renders what training rendered - as Ollama does: the Modelfile's
SYSTEM becomes a leading system message when a chat has none, and the template is given `.Messages`."""

from __future__ import annotations

import re

ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.DOTALL)
TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\(|\)|:=|=|,|[^\s(),=]+')


def ollama_render(template: str, messages: list[dict], system: str | None = None) -> str:
    if system is not None and (not messages or messages[0]["role"] != "system"):
        messages = [{"role": "system", "content": system}, *messages]
    data = {"Messages": [{"Role": m["role"], "Content": m["content"]} for m in messages], "System": system or ""}
    return render(template, data)


def render(template: str, data: dict) -> str:
    nodes, rest = _parse(_lex(template), 0, ())
    assert rest == len(_lex(template)), "unbalanced {{ end }}"
    out: list[str] = []
    _run(nodes, data, {"$": data}, out)
    return "".join(out)


def _lex(template: str) -> list:
    items, pos = [], 0
    for m in ACTION.finditer(template):
        text = template[pos:m.start()]
        if m.group(1):
            text = text.rstrip()
        if items and isinstance(items[-1], tuple) and items[-1][1]:  # previous action ended with -}}
            text = text.lstrip()
        items.append(text)
        items.append((m.group(2), bool(m.group(3))))
        pos = m.end()
    tail = template[pos:]
    if items and items[-1][1]:
        tail = tail.lstrip()
    return [*items, tail]


def _parse(items: list, i: int, stops: tuple[str, ...]):
    nodes = []
    while i < len(items):
        item = items[i]
        if isinstance(item, str):
            nodes.append(("text", item))
            i += 1
            continue
        action = item[0]
        word = action.split()[0] if action else ""
        if word in ("end", "else") and stops:
            return nodes, i
        if word == "if":
            branches = []
            cond = action[2:].strip()
            while True:
                body, i = _parse(items, i + 1, ("end", "else"))
                branches.append((cond, body))
                closing = items[i][0]
                if closing == "end":
                    break
                cond = closing[len("else if"):].strip() if closing.startswith("else if") else None
            nodes.append(("if", branches))
            i += 1
        elif word == "range":
            body, i = _parse(items, i + 1, ("end",))
            nodes.append(("range", action[len("range"):].strip(), body))
            i += 1
        else:
            nodes.append(("action", action))
            i += 1
    return nodes, i


def _run(nodes, dot, scope: dict, out: list[str]) -> None:
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "if":
            for cond, body in node[1]:
                if cond is None or _truthy(_eval(cond, dot, scope)):
                    _run(body, dot, scope, out)
                    break
        elif node[0] == "range":
            spec = node[1]
            names: list[str] = []
            if ":=" in spec:
                left, spec = spec.split(":=")
                names = [n.strip() for n in left.split(",")]
            for index, item in enumerate(_eval(spec, dot, scope) or []):
                if len(names) == 2:
                    scope[names[0]], scope[names[1]] = index, item
                elif names:
                    scope[names[0]] = item
                _run(node[2], item, scope, out)
        else:
            m = re.fullmatch(r"(\$\w+)\s*(:?=)\s*(.+)", node[1], re.DOTALL)
            if m:
                scope[m.group(1)] = _eval(m.group(3), dot, scope)
            else:
                value = _eval(node[1], dot, scope)
                out.append("" if value is None else str(value))


def _truthy(value) -> bool:
    return bool(value)  # Go: false, 0, "", nil and empty collections are false


def _eval(expr: str, dot, scope: dict):
    tokens = TOKEN.findall(expr)
    value, rest = _command(tokens, 0, dot, scope)
    assert rest == len(tokens), expr
    return value


FUNCTIONS = {
    "eq": lambda a, *b: any(a == x for x in b), "ne": lambda a, b: a != b, "not": lambda a: not _truthy(a),
    "len": len, "slice": lambda x, *ix: x[ix[0]:ix[1]] if len(ix) == 2 else x[ix[0]:] if ix else x,
    "and": lambda *a: next((x for x in a if not _truthy(x)), a[-1]),
    "or": lambda *a: next((x for x in a if _truthy(x)), a[-1]),
}


def _command(tokens: list[str], i: int, dot, scope: dict):
    """A function applied to arguments, or a single operand; up to a closing parenthesis."""
    if tokens[i] in FUNCTIONS:
        name, args, i = tokens[i], [], i + 1
        while i < len(tokens) and tokens[i] != ")":
            value, i = _operand(tokens, i, dot, scope)
            args.append(value)
        return FUNCTIONS[name](*args), i
    return _operand(tokens, i, dot, scope)


def _operand(tokens: list[str], i: int, dot, scope: dict):
    token = tokens[i]
    if token == "(":
        value, i = _command(tokens, i + 1, dot, scope)
        assert tokens[i] == ")"
        return value, i + 1
    if token.startswith('"'):
        return bytes(token[1:-1], "utf-8").decode("unicode_escape"), i + 1
    if token in ("true", "false"):
        return token == "true", i + 1
    if token.lstrip("-").isdigit():
        return int(token), i + 1
    if token == ".":
        return dot, i + 1
    if token.startswith("$"):
        head, _, field = token.partition(".")
        value = scope[head]
        return (value[field] if field else value), i + 1
    if token.startswith("."):
        return dot[token[1:]], i + 1
    raise ValueError(f"unsupported Go template operand {token!r}")
