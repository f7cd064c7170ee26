"""The library a porter copies uses only what TensorFlow 1.15 had.

TF 1.15 installs only on Python <= 3.7, so it cannot run here; its public API is known exactly from
TensorFlow's own API golden files at v1.15.5 (../shared/tf1.15-api-golden/: one .pbtxt per module or
class of the v1 `tf` namespace, each listing its members and each function's argument names). Every
attribute chain on `tf` or `tf1` (= tf.compat.v1, which in 1.15 is that same v1 API) in the three
library modules must resolve there, and every keyword argument given to such a function or class
must be one its 1.15 signature takes.
"""
import ast
import re

import pytest

from conftest import ROOT

GOLDEN = ROOT.parent / "shared" / "tf1.15-api-golden"
LIBRARY = sorted(p.name for p in ROOT.glob("tf1_*.py") if "import tensorflow" in p.read_text())  # tf1_config: none


def golden_file(path):
    """tensorflow.train.AdamOptimizer -> tensorflow.train.-adam-optimizer.pbtxt (upper case: '-' + lower)."""
    return GOLDEN / (".".join(re.sub(r"[A-Z]", lambda m: "-" + m.group(0).lower(), p) for p in path) + ".pbtxt")


def members(path):
    """{name: (kind, argument names or None)} of the module or class at `path`, or None if 1.15 has no file."""
    f = golden_file(path)
    if not f.exists():
        return None
    found = {}
    for kind, body in re.findall(r"^  (member|member_method) \{\n(.*?)^  \}", f.read_text(), re.S | re.M):
        name = re.search(r'name: "([^"]+)"', body).group(1)
        spec = re.search(r'argspec: "(.*)"', body)
        args = None
        if spec:
            accepts_any = "keywords=None" not in spec.group(1)
            args = None if accepts_any else set(re.findall(r"\\'(\w+)\\'", re.search(r"args=\[(.*?)\]", spec.group(1)).group(1)))
        found[name] = (kind, args)
    return found


def chain(node):
    """['tf', 'nn', 'relu'] for the expression tf.nn.relu, or None for anything but a dotted name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return [node.id] + parts[::-1] if isinstance(node, ast.Name) else None


def uses(source):
    """[(line, dotted name under tf's v1 API, keyword names given)] for every tf/tf1 chain in source."""
    tree = ast.parse(source)
    roots = {"tf": []}
    for node in ast.walk(tree):  # tf1 = tf.compat.v1
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            c = chain(node.value)
            if c and c[0] == "tf":
                roots[node.targets[0].id] = c[1:]
    calls = {id(n.func): [k.arg for k in n.keywords if k.arg] for n in ast.walk(tree) if isinstance(n, ast.Call)}
    found, inner = [], set()
    for node in ast.walk(tree):  # outermost chains only: tf.nn.relu, not also tf.nn
        if isinstance(node, ast.Attribute) and id(node) not in inner:
            c = chain(node)
            if c and c[0] in roots:
                n = node.value
                while isinstance(n, ast.Attribute):
                    inner.add(id(n))
                    n = n.value
                path = roots[c[0]] + c[1:]
                if path[:2] == ["compat", "v1"]:  # in 1.15, tf.compat.v1 is the v1 API itself
                    path = path[2:]
                if path:
                    found.append((node.lineno, path, calls.get(id(node), [])))
    return found


def missing(source):
    """What 1.15 lacks among source's uses: ['line N: tf.a.b', 'line N: tf.f(keyword=)']."""
    problems = []
    for line, path, keywords in sorted(uses(source)):
        where, entry = ["tensorflow"], None
        for k, part in enumerate(path):
            listed = members(where)
            if listed is None or part not in listed:
                problems.append(f"line {line}: tf.{'.'.join(path[:k + 1])}")
                break
            entry = listed[part]
            where = where + [part]
        else:
            kind, args = entry
            if kind == "member" and keywords:  # a class: its constructor's arguments
                args = (members(where) or {}).get("__init__", (None, None))[1]
            for k in keywords:
                if args is not None and k not in args:
                    problems.append(f"line {line}: tf.{'.'.join(path)}({k}=)")
    return problems


needs_golden = pytest.mark.skipif(not GOLDEN.exists(), reason=f"TF 1.15's API golden files not found at {GOLDEN} "
                                                               "(only developers' machines and CI have ../shared)")


@needs_golden
@pytest.mark.parametrize("module", LIBRARY)
def test_the_library_uses_only_tf_1_15_names(module):
    source = (ROOT / module).read_text()
    assert len(uses(source)) > 3  # the walk finds the module's TensorFlow names
    assert missing(source) == []


@needs_golden
def test_the_check_catches_2x_only_names_and_arguments():
    source = ("import tensorflow as tf\ntf1 = tf.compat.v1\n"
              "a = tf.nn.experimental.stateless_dropout(x, 0.5, seed)\n"  # TF 2.x only
              "b = tf1.train.Saver(max_to_keep=3, save_relative_paths=True)\n"  # both in 1.15
              "c = tf.random.stateless_uniform([2], seed, alg='philox')\n"  # alg: 2.x only
              "d = tf1.layers.Dense\n"  # in 1.15
              "e = tf.keras.layers.EinsumDense\n")  # 2.x only
    assert missing(source) == ["line 3: tf.nn.experimental", "line 5: tf.random.stateless_uniform(alg=)",
                               "line 7: tf.keras.layers.EinsumDense"]
