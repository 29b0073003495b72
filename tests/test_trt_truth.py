"""Our TensorRT code against the real TensorRT of every version we claim (issue 16, item 3).

- Every TensorRT Python name our code uses on a version path exists in that version's API surface
  (../shared/notes/trt-python-api/<v>.json, extracted from each release's pybind11 sources), for every
  release in trt_compat.CLAIMED_VERSIONS (8.0 ... 11.1). The path of a use is read from the code: the
  function's @trt_compat.only_with mark, `if flav.<capability>:` / `if api == "tensor":` branches (and the
  statements after an `if ...: return`), `if strongly_typed:`; a `hasattr(obj, name)` guard exempts obj.name.
- trt_support.json agrees with onnx-tensorrt's docs/operators.md of each release that has one.
- No module outside defectrt.trt_compat compares TensorRT versions (the one home for them).
These need ../shared (skipped with the reason where it is absent, e.g. a user's clone) except the last.
"""
import ast
import glob
import json
import os
import re

import pytest

from defectrt import trt_compat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "src", "defectrt")
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
API_DIR = os.path.join(SHARED, "notes", "trt-python-api")
OPS_DIR = os.path.join(SHARED, "notes", "onnx-tensorrt-operators")

needs_api = pytest.mark.skipif(not os.path.isdir(API_DIR), reason="../shared/notes/trt-python-api is absent (a clone "
                               "without the shared TensorRT notes): the API name check cannot run")
needs_ops = pytest.mark.skipif(not os.path.isdir(OPS_DIR), reason="../shared/notes/onnx-tensorrt-operators is absent: "
                               "the support-table check cannot run")

# The modules that call TensorRT, and which TensorRT class each receiver name holds there.
TRT_MODULES = {
    "export/engine.py": {"builder": "Builder", "network": "INetworkDefinition", "net": "INetworkDefinition",
                         "parser": "OnnxParser", "config": "IBuilderConfig", "profile": "IOptimizationProfile",
                         "layer": "ILayer", "err": "ParserError", "t": "ITensor", "cache": "ITimingCache"},
    "runtime/tensorrt_backend.py": {"engine": "ICudaEngine", "self.engine": "ICudaEngine", "ctx": "IExecutionContext",
                                    "self.context": "IExecutionContext", "self._runtime": "Runtime"},
}


def _load_api(version):
    with open(os.path.join(API_DIR, version + ".json")) as f:
        return json.load(f)["api"]


def _dotted(node):
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return inner + "." + node.attr if inner else None
    return None


class Use(object):
    def __init__(self, cls, member, line, constraints, module):
        self.cls, self.member, self.line, self.constraints, self.module = cls, member, line, constraints, module

    def versions(self):
        out = []
        for v in trt_compat.CLAIMED_VERSIONS:
            flav = trt_compat.flavour(v)
            if all(getattr(flav, cap) == want for cap, want in self.constraints):
                out.append(v)
        return out

    def __repr__(self):
        return "{}:{} {}.{} on {}".format(self.module, self.line, self.cls, self.member, self.constraints)


def _condition(test):
    """-> [(capability, wanted)] the test establishes when true, or None when it is not a version condition."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        inner = _condition(test.operand)
        if inner and len(inner) == 1:
            return [(inner[0][0], not inner[0][1])]
        return None
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        parts = [c for c in (_condition(v) for v in test.values) if c]
        return [p for c in parts for p in c] or None
    if isinstance(test, ast.Attribute) and test.attr in trt_compat.CAPABILITIES:
        return [(test.attr, True)]
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], (ast.Eq, ast.NotEq)):
        left, right = _dotted(test.left), test.comparators[0]
        if left and left.split(".")[-1] in ("api", "io_api") and isinstance(right, ast.Constant):
            want = (right.value == "tensor") == isinstance(test.ops[0], ast.Eq)
            return [("tensor_io", want)]
    # a strongly typed network exists only where the flag does; a weakly typed one only where precision flags do
    strongly = isinstance(test, ast.Name) and test.id in ("strongly", "strongly_typed")
    strongly = strongly or (isinstance(test, ast.Subscript) and isinstance(test.slice, ast.Constant)
                            and test.slice.value == "strongly_typed")
    if strongly:
        return [("strongly_typed_network", True)]
    return None


def _negate(cond):
    if cond and len(cond) == 1:
        cap, want = cond[0]
        if cap == "strongly_typed_network":
            return [("precision_flags", True)]
        return [(cap, not want)]
    return []


def _hasattr_guards(test):
    guards = set()
    for node in ast.walk(test):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "hasattr" \
                and len(node.args) == 2 and isinstance(node.args[1], ast.Constant):
            guards.add((_dotted(node.args[0]), node.args[1].value))
    return guards


def collect_uses(path, receivers):
    """Every TensorRT name the module uses, with the capability constraints of its path."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    module = os.path.relpath(path, SRC)
    uses = []

    def record_attr(sub, constraints, guards):
        owner = _dotted(sub.value)
        if owner is None or (owner, sub.attr) in guards:
            return
        parts = owner.split(".")
        if parts[0] == "trt" and len(parts) == 2 and parts[1][:1].isupper():
            uses.append(Use(parts[1], sub.attr, sub.lineno, constraints, module))  # trt.Enum.MEMBER
        elif owner in receivers:
            uses.append(Use(receivers[owner], sub.attr, sub.lineno, constraints, module))

    def record(node, constraints, guards, skip=frozenset()):
        for sub in ast.walk(node):
            if isinstance(sub, ast.Attribute) and id(sub) not in skip:
                record_attr(sub, constraints, guards)

    def block(stmts, constraints, guards):
        constraints = list(constraints)
        for stmt in stmts:
            if isinstance(stmt, ast.If):
                cond = _condition(stmt.test)
                g = guards | _hasattr_guards(stmt.test)
                record(stmt.test, constraints, guards)
                block(stmt.body, constraints + (cond or []), g)
                block(stmt.orelse, constraints + _negate(cond), guards)
                if cond and not stmt.orelse and stmt.body and isinstance(stmt.body[-1], (ast.Return, ast.Raise)):
                    constraints = constraints + _negate(cond)  # what follows `if cond: ...; return` is not cond
            elif isinstance(stmt, (ast.FunctionDef, ast.ClassDef)):
                own = list(constraints)
                for dec in getattr(stmt, "decorator_list", ()):
                    if isinstance(dec, ast.Call) and _dotted(dec.func) == "trt_compat.only_with":
                        cap = dec.args[0].value
                        present = dec.args[1].value if len(dec.args) > 1 else True
                        for kw in dec.keywords:
                            if kw.arg == "present":
                                present = kw.value.value
                        own.append((cap, present))
                block(stmt.body, own, guards)
            elif isinstance(stmt, (ast.For, ast.While, ast.With, ast.Try)):
                for field in ("iter", "test", "items"):
                    if hasattr(stmt, field):
                        value = getattr(stmt, field)
                        for v in (value if isinstance(value, list) else [value]):
                            record(v, constraints, guards)
                for field in ("body", "orelse", "finalbody"):
                    block(getattr(stmt, field, []) or [], constraints, guards)
                for handler in getattr(stmt, "handlers", []):
                    block(handler.body, constraints, guards)
            else:
                _record_expr_with_ifexp(stmt, constraints, guards)

    def _record_expr_with_ifexp(node, constraints, guards):
        """A statement; the branches of its conditional expressions (`a if flav.x else b`) get their path."""
        handled = set()
        for e in [n for n in ast.walk(node) if isinstance(n, ast.IfExp)]:
            if id(e) in handled:
                continue
            cond = _condition(e.test)
            record(e.test, constraints, guards)
            record(e.body, constraints + (cond or []), guards | _hasattr_guards(e.test))
            record(e.orelse, constraints + _negate(cond), guards)
            handled.update(id(n) for n in ast.walk(e))
        record(node, constraints, guards, skip=handled)

    block(tree.body, [], set())
    # one use per (line, name): nested Attribute walks can see the same node twice
    seen, unique = set(), []
    for u in uses:
        key = (u.line, u.cls, u.member, tuple(u.constraints))
        if key not in seen:
            seen.add(key)
            unique.append(u)
    return unique


def all_uses():
    uses = []
    for rel, receivers in TRT_MODULES.items():
        uses += collect_uses(os.path.join(SRC, rel), receivers)
    return uses


def missing_names(uses, load=_load_api):
    """-> ['module:line Class.member missing in 8.0', ...] over every claimed version each use's path runs on."""
    apis = {v: load(v) for v in trt_compat.CLAIMED_VERSIONS}
    out = []
    for u in uses:
        for v in u.versions():
            members = apis[v].get(u.cls)
            if u.cls == "Logger":
                # pybind11 quirks of the extraction: trt.Logger is listed as ILogger in 8.0, and Logger.WARNING is
                # the nested Severity enum's exported value (listed under Severity).
                api = apis[v]
                if api.get("Logger") is not None or api.get("ILogger") is not None:
                    members = set(api.get("Logger") or api.get("ILogger")) | set(api.get("Severity") or ())
            if members is None:
                out.append("{}:{} trt.{} does not exist in TensorRT {}".format(u.module, u.line, u.cls, v))
            elif u.member not in members and not u.member.startswith("__"):
                out.append("{}:{} {}.{} does not exist in TensorRT {}".format(u.module, u.line, u.cls, u.member, v))
    return sorted(set(out))


@needs_api
def test_every_claimed_version_has_an_api_surface():
    have = {os.path.basename(p)[:-5] for p in glob.glob(os.path.join(API_DIR, "*.json"))}
    assert set(trt_compat.CLAIMED_VERSIONS) <= have


@needs_api
def test_every_tensorrt_name_we_use_exists_on_its_version_path():
    uses = all_uses()
    found = {(u.cls, u.member) for u in uses}
    # the collector must keep seeing the calls that matter (a refactor that hides them fails here)
    for must in [("IExecutionContext", "execute_async_v3"), ("IExecutionContext", "execute_async_v2"),
                 ("ICudaEngine", "num_io_tensors"), ("ICudaEngine", "num_bindings"), ("BuilderFlag", "FP16"),
                 ("BuilderFlag", "OBEY_PRECISION_CONSTRAINTS"), ("BuilderFlag", "STRICT_TYPES"),
                 ("NetworkDefinitionCreationFlag", "STRONGLY_TYPED"), ("NetworkDefinitionCreationFlag", "EXPLICIT_BATCH"),
                 ("IBuilderConfig", "max_workspace_size"), ("IBuilderConfig", "set_memory_pool_limit"),
                 ("ILayer", "set_output_type"), ("LayerType", "CAST"), ("ParserError", "node_name"),
                 ("Builder", "num_DLA_cores"), ("IBuilderConfig", "DLA_core"), ("ITimingCache", "serialize"),
                 ("IBuilderConfig", "progress_monitor")]:
        assert must in found, "the name check no longer sees {}.{}".format(*must)
    assert len(uses) > 60
    problems = missing_names(uses)
    assert not problems, "TensorRT names used where that release lacks them:\n" + "\n".join(problems)
    # every path must run on at least one claimed release (a contradictory path hides its names)
    assert all(u.versions() for u in uses), [u for u in uses if not u.versions()]


@needs_api
def test_the_name_check_fails_on_a_broken_name(tmp_path):
    """A use on the wrong path, or a misspelt member, is reported with the releases that lack it."""
    src = tmp_path / "m.py"
    src.write_text(
        "def f(trt, flav, config, ctx):\n"
        "    config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINT)\n"   # misspelt
        "    if flav.tensor_io:\n"
        "        ctx.execute_async_v3(0)\n"                                   # right path: fine
        "    ctx.execute_async_v3(0)\n"                                       # every version: 8.0-8.4 lack it
        "    if flav.precision_flags:\n"
        "        config.set_flag(trt.BuilderFlag.FP16)\n"                     # fine
        "    else:\n"
        "        config.set_flag(trt.BuilderFlag.FP16)\n")                    # 11.x lacks it
    uses = collect_uses(str(src), {"config": "IBuilderConfig", "ctx": "IExecutionContext"})
    problems = "\n".join(missing_names(uses))
    assert "BuilderFlag.OBEY_PRECISION_CONSTRAINT does not exist in TensorRT 8.2" in problems
    assert ":5 IExecutionContext.execute_async_v3 does not exist in TensorRT 8.4" in problems
    assert ":4 " not in problems and ":7 " not in problems
    assert ":9 BuilderFlag.FP16 does not exist in TensorRT 11.0" in problems


# ------------------------------------------------------------------------------------ support table vs docs

DOC_ROWS = {"8.0-GA": "8.0", "8.2-GA": "8.2", "8.4-GA": "8.4", "8.5-GA": "8.5", "8.6-GA": "8.6", "10.0-GA": "10.0",
            "10.1-GA": "10.1"}


def _doc(name):
    with open(os.path.join(OPS_DIR, name + ".md")) as f:
        text = f.read()
    rows = re.findall(r"^\|\s*([A-Za-z][A-Za-z0-9_]*)\s*\|\s*([YN])\b", text, re.M)
    m = re.search(r"[Oo]pset (\d+)\.", text.split("\n## ")[0])
    yes = {a for a, b in rows if b == "Y"}
    # 8.4-GA lists HardSwish twice (N, then Y after the 8.4.2 update): a Y anywhere wins
    return yes, {a for a, b in rows if b == "N"} - yes, int(m.group(1))


def table_disagreements(support_row=trt_compat.support_row):
    out = []
    for doc, row_key in DOC_ROWS.items():
        yes, no, opset = _doc(doc)
        key, row = support_row(row_key)
        assert key == row_key
        for op in sorted(yes - row["ops"]):
            out.append("{}: {} is supported in {} but missing from the table".format(row_key, op, doc))
        for op in sorted(no & row["ops"]):
            out.append("{}: {} is listed but {} says N".format(row_key, op, doc))
        if row["max_opset"] != opset:
            out.append("{}: max_opset {} but {} says opset {}".format(row_key, row["max_opset"], doc, opset))
    return out


@needs_ops
def test_support_table_agrees_with_the_parser_docs():
    problems = table_disagreements()
    assert not problems, "\n".join(problems)


@needs_ops
def test_support_table_check_catches_a_wrong_entry():
    def broken(version):
        key, row = trt_compat.support_row(version)
        if key == "8.4":
            row = dict(row, max_opset=13, ops=(row["ops"] - {"HardSwish"}) | {"SoftmaxCrossEntropyLoss"})
        return key, row
    problems = table_disagreements(broken)
    assert problems == ["8.4: HardSwish is supported in 8.4-GA but missing from the table",
                        "8.4: SoftmaxCrossEntropyLoss is listed but 8.4-GA says N",
                        "8.4: max_opset 13 but 8.4-GA says opset 17"]


# ------------------------------------------------------------------------------------ one home for versions

VERSIONISH = re.compile(r"(trt|tensorrt)", re.I)


def version_comparisons(path):
    """Comparisons that look like TensorRT version thresholds: an ordering against a tuple starting with a
    TensorRT major (7-12), or of a name/call mentioning trt / tensorrt / target (or `x[0]` of one) against an
    int or a tuple."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    hits = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left] + list(node.comparators)
        ordering = any(isinstance(op, (ast.Lt, ast.LtE, ast.Gt, ast.GtE)) for op in node.ops)
        for o in operands:
            if isinstance(o, ast.Tuple) and o.elts and isinstance(o.elts[0], ast.Constant) \
                    and isinstance(o.elts[0].value, int) and 7 <= o.elts[0].value <= 12 and len(o.elts) >= 2:
                hits.append((node.lineno, ast.dump(node)[:80]))
        if ordering:
            for o in operands:
                base = o.value if isinstance(o, ast.Subscript) else o
                name = _dotted(base) or (_dotted(base.func) if isinstance(base, ast.Call) else None) or ""
                if VERSIONISH.search(name.split(".")[-1]) and "opset" not in name.lower():
                    hits.append((node.lineno, name))
    return hits


def test_no_module_outside_trt_compat_compares_tensorrt_versions():
    offenders = []
    for path in glob.glob(os.path.join(SRC, "**", "*.py"), recursive=True):
        if os.path.abspath(path) == os.path.abspath(trt_compat.__file__):
            continue
        for line, what in version_comparisons(path):
            offenders.append("{}:{} {}".format(os.path.relpath(path, SRC), line, what))
    assert not offenders, "TensorRT version thresholds outside defectrt/trt_compat.py:\n" + "\n".join(offenders)


def test_the_structural_check_sees_thresholds(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("def f(version, target_trt, trt_major, target):\n"
                   "    a = version >= (8, 5)\n"
                   "    b = parse_trt_version(target_trt)[0] < 10\n"
                   "    c = trt_major <= 8\n"
                   "    d = opset >= 18\n"
                   "    e = n > target\n")
    assert [line for line, _ in version_comparisons(str(src))] == [2, 3, 4]
