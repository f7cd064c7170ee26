"""docs/porting.md held to real use: the files it tells a porter to copy are exactly the library's,
and alone in an empty folder they run the README's ten-line example and the guide's code."""
import ast
import re
import shutil
import subprocess
import sys

from conftest import ROOT

DOC = ROOT / "docs" / "porting.md"


def copy_list():
    """The files docs/porting.md names in its section "The files a porter copies", first paragraph."""
    section = DOC.read_text().split("## The files a porter copies", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"`(\w+\.py)`", section.strip().split("\n\n")[0])


def imported_closure(module):
    """The project's modules that `module` needs, by their imports (itself included)."""
    found, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in found or not (ROOT / f"{name}.py").exists():
            continue
        found.add(name)
        for node in ast.walk(ast.parse((ROOT / f"{name}.py").read_text())):
            if isinstance(node, ast.Import):
                todo += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                todo.append(node.module)
    return found


def python_blocks(path):
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_porting_the_copy_list_is_the_librarys_import_closure():
    """Exactly what tf1_tied_ae imports, transitively, and no program (tae_*) module."""
    listed = copy_list()
    assert len(listed) == len(set(listed)) >= 5
    assert {name[:-3] for name in listed} == imported_closure("tf1_tied_ae")


def test_porting_the_listed_files_alone_run_the_readme_example_and_the_guide(tmp_path):
    """The listed files in an empty folder, Python started there without the project on its path
    (-E: no PYTHONPATH): the README's ten-line example, then every ```python block of the guide."""
    for name in copy_list():
        shutil.copy(ROOT / name, tmp_path / name)
    blocks = python_blocks(ROOT / "README.md")[:1] + python_blocks(DOC)
    script = "\n".join(f"exec(compile({block!r}, 'block {k}', 'exec'), {{'__name__': '__port__'}})"
                       for k, block in enumerate(blocks))
    (tmp_path / "run_blocks.py").write_text("import os\nos.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')\n" + script)
    r = subprocess.run([sys.executable, "-E", "-s", "run_blocks.py"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "checkpoints" / "mine").is_dir()  # the README's example saved its checkpoint there
