"""Structural contracts of issue 15, read from the sources with `ast` (the TensorRT-version one lives in
tests/test_trt_truth.py: no module outside defectrt.trt_compat compares TensorRT versions).

- Only runtime/bundle.py names manifest.json (reads it, writes it): the bundle layout has one home.
- Only modelref.py parses `demo:` references, imgsz values and ONNX metadata_props.
- No module outside runtime/bundle.py reads a manifest with `.get(`: the Manifest type has named fields.
- Our own modules are imported plainly (no importlib / __import__ of a "defectrt..." name).
- No module probes a backend by attribute (getattr / hasattr on a `backend` / `be`) or by its class name:
  runtime/backend.py's Backend protocol says what a backend offers.
"""
import ast
import os

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src", "defectrt")

# data/synth: its own --imgsz minimum (16 px) is checked there; issue 15 item 7 (another branch) splits that
# module into a package, after which it calls modelref.parse_imgsz too.
IMGSZ_EXEMPT = ("data/synth",)


def modules():
    for root, _, names in os.walk(SRC):
        for name in sorted(names):
            if name.endswith(".py"):
                full = os.path.join(root, name)
                rel = os.path.relpath(full, SRC).replace(os.sep, "/")
                with open(full, encoding="utf-8") as f:
                    yield rel, ast.parse(f.read(), filename=full)


def constants(tree, value):
    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value == value]


def imgsz_parsers(tree):
    """Functions named like an imgsz parser that convert values themselves (int(...)) instead of calling
    modelref.parse_imgsz."""
    found = []
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef) or "imgsz" not in fn.name:
            continue
        calls = [c.func for c in ast.walk(fn) if isinstance(c, ast.Call)]
        names = {f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None for f in calls}
        if "int" in names and "parse_imgsz" not in names:
            found.append((fn.name, fn.lineno))
    return found


def metadata_readers(tree):
    """`{p.key: p.value for p in x.metadata_props}` comprehensions."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.DictComp) and isinstance(node.value, ast.Attribute) and node.value.attr == "value":
            it = node.generators[0].iter
            if isinstance(it, ast.Attribute) and it.attr == "metadata_props":
                found.append(node.lineno)
    return found


def backend_probes(tree):
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
                and node.args):
            target = node.args[0]
            text = ast.dump(target)
            if "'backend'" in text or "id='be'" in text:
                found.append(node.lineno)
        if isinstance(node, ast.Compare) and any(isinstance(c, ast.Constant) and c.value in ("trt", "tensorrt")
                                                 for c in node.comparators + [node.left]):
            if any(isinstance(op, ast.In) for op in node.ops):
                found.append(node.lineno)
    return found


def _names_a_manifest(node):
    while isinstance(node, ast.Subscript):
        node = node.value
    if isinstance(node, ast.BoolOp):
        return any(_names_a_manifest(v) for v in node.values)
    if isinstance(node, ast.Call):  # f(...) called like a manifest, or manifest.x(...): the result is one too
        if isinstance(node.func, ast.Attribute) and _names_a_manifest(node.func.value):
            return True
        node = node.func
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    return "manifest" in name.lower()


def manifest_gets(tree):
    """`.get(...)` on a manifest: on a name or attribute called like a manifest, on a call of a function called
    like one (read_manifest(...).get), or on a subscript / `or` of those. A manifest is a runtime.bundle.Manifest
    read by its fields; only bundle.py handles the JSON object."""
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
            and _names_a_manifest(node.func.value)]


def own_dynamic_imports(tree):
    """importlib.import_module / __import__ of one of our own modules (a name starting "defectrt", built or
    literal): our modules are imported plainly, so an import error shows where it happens."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        f = node.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
        if name in ("import_module", "__import__") and any(
                isinstance(c, ast.Constant) and isinstance(c.value, str) and c.value.startswith("defectrt")
                for c in ast.walk(node.args[0])):
            found.append(node.lineno)
    return found


def offenders(check, allowed=(), exempt=()):
    out = {}
    for rel, tree in modules():
        if rel in allowed or rel.startswith(exempt):
            continue
        hits = check(tree)
        if hits:
            out[rel] = hits
    return out


def test_only_the_bundle_module_names_manifest_json():
    assert offenders(lambda t: constants(t, "manifest.json"), allowed=("runtime/bundle.py",)) == {}


def test_only_modelref_parses_demo_references():
    assert offenders(lambda t: constants(t, "demo:"), allowed=("modelref.py",)) == {}


def test_only_modelref_parses_imgsz():
    # limits.check_imgsz bounds an (h, w) already parsed; it reads no spelling of its own
    assert offenders(imgsz_parsers, allowed=("modelref.py", "runtime/limits.py"), exempt=IMGSZ_EXEMPT) == {}


def test_only_modelref_reads_onnx_metadata():
    assert offenders(metadata_readers, allowed=("modelref.py",)) == {}


def test_no_module_probes_backends_by_attribute_or_class_name():
    assert offenders(backend_probes) == {}


def test_manifests_are_read_by_their_fields():
    assert offenders(manifest_gets, allowed=("runtime/bundle.py",)) == {}


def test_our_modules_are_imported_plainly():
    assert offenders(own_dynamic_imports) == {}


def test_the_checks_see_what_they_forbid():
    tree = ast.parse('''
def _imgsz(v):
    return int(v), int(v)
def f(model, backend):
    m = {p.key: p.value for p in model.metadata_props}
    open("manifest.json"); ref.startswith("demo:"); getattr(backend, "time_stages", None)
    return "trt" in type(backend).__name__
importlib.import_module("defectrt.cli." + name); __import__("defectrt.models"); importlib.import_module("numpy")
manifest.get("a"); self.manifest["build"].get("b"); read_manifest(f).get("c"); (manifest.get("d") or {}).get("e")
manifest.files.get(rel); thresholds.get("conf"); manifest_path.split("/"); manifest.to_json().get("f")
''')
    assert imgsz_parsers(tree) == [("_imgsz", 2)]
    assert metadata_readers(tree) == [5]
    assert constants(tree, "manifest.json") == [6] and constants(tree, "demo:") == [6]
    assert backend_probes(tree) == [6, 7]
    assert own_dynamic_imports(tree) == [8, 8]
    assert sorted(manifest_gets(tree)) == [9, 9, 9, 9, 9, 10]  # line 9: `(... or {}).get` and the inner .get
