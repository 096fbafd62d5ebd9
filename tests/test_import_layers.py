"""The package imports one way: data / models / losses / alignment -> parallel -> evaluation ->
tasks -> train -> top (main, experiment, metrics writer, plots, reports, bench, configs).

Every import of a vatt module, at module level or inside a function, is an edge; an edge from a
module to one of a higher layer fails, naming the file, line and the way to fix it."""

import ast
import os

from subprocess_utils import REPO_ROOT

# Lower number = lower layer. A module may import its own layer and the ones below.
LAYERS = {
    "vatt.data": 0, "vatt.models": 0, "vatt.losses": 0, "vatt.alignment": 0, "vatt.paths": 0, "vatt.errors": 0,
    "vatt.weight_files": 0, "vatt.kept": 0,
    "vatt.parallel": 1,
    "vatt.evaluation": 2,
    "vatt.tasks": 3,
    "vatt.train": 4,
    "vatt.main": 5, "vatt.experiment": 5, "vatt.metrics_writer": 5, "vatt.plots": 5,
    "vatt.alignment_report": 5, "vatt.bench": 5, "vatt.config_validation": 5,
    "vatt.config_files": 5, "vatt.testing": 5, "vatt.tracking": 5, "vatt.event_files": 5,
    "vatt.convert": 5, "vatt.export": 5, "vatt.ablation": 5,
}
# The package root holds only its version; anything may import it.
ROOT_MODULE = "vatt"


def layer_of(module: str) -> int | None:
    """The layer of a dotted module name (longest matching prefix), None for the root."""
    if module == ROOT_MODULE:
        return None
    best = None
    for prefix, layer in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, layer)
    if best is None:
        raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in {__file__}")
    return best[1]


def module_name(path: str, root: str) -> str:
    rel = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
    return rel.removesuffix(".__init__")


def vatt_imports(path: str, module: str) -> list[tuple[str, int]]:
    """(imported vatt module, line) of every import in the file, wherever it appears."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "vatt"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] != "vatt":
                continue
            for alias in node.names:
                # `from vatt.x import y` imports vatt.x.y when y is a module, else vatt.x.
                full = f"{base}.{alias.name}"
                out.append((full if _is_module(full) else base, node.lineno))
    return out


def _is_module(name: str) -> bool:
    path = os.path.join(REPO_ROOT, *name.split("."))
    return os.path.isdir(path) or os.path.isfile(path + ".py")


def upward_edges(package_dir: str) -> list[str]:
    root = os.path.dirname(package_dir)
    problems = []
    for dirpath, _, files in os.walk(package_dir):
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.join(dirpath, name)
            module = module_name(path, root)
            here = layer_of(module)
            for imported, line in vatt_imports(path, module):
                there = layer_of(imported)
                if here is not None and there is not None and there > here:
                    problems.append(
                        f"{os.path.relpath(path, root)}:{line}: {module} (layer {here}) imports "
                        f"{imported} (layer {there}); hand what it needs down to it instead")
    return problems


def test_no_module_imports_a_higher_layer():
    problems = upward_edges(os.path.join(REPO_ROOT, "vatt"))
    assert not problems, "imports against the layer order:\n" + "\n".join(problems)


def test_every_module_has_a_layer():
    for dirpath, _, files in os.walk(os.path.join(REPO_ROOT, "vatt")):
        for name in files:
            if name.endswith(".py"):
                layer_of(module_name(os.path.join(dirpath, name), REPO_ROOT))


def test_an_upward_import_is_caught(tmp_path):
    """The check itself can fail: a copy of the package where the data layer imports the train
    loop inside a function, and one where evaluation imports the tasks at module level."""
    import shutil
    copy = tmp_path / "vatt"
    shutil.copytree(os.path.join(REPO_ROOT, "vatt"), copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "data" / "synthetic.py", "a", encoding="utf-8") as f:
        f.write("\n\ndef _sneaky():\n    from vatt.train import loop\n    return loop\n")
    with open(copy / "evaluation" / "base.py", "a", encoding="utf-8") as f:
        f.write("\nfrom vatt.tasks.base import Task  # noqa\n")
    problems = upward_edges(str(copy))
    assert any("vatt.data.synthetic (layer 0) imports vatt.train.loop (layer 4)" in p
               for p in problems), problems
    assert any("vatt.evaluation.base (layer 2) imports vatt.tasks.base (layer 3)" in p
               for p in problems), problems
    assert len(problems) == 2


def test_models_losses_tasks_train_loop_and_bench_import_no_tensorflow():
    """TensorFlow stays in the data layer's real-data modules."""
    from subprocess_utils import run_python
    out = run_python("""
        import json, sys
        import vatt.models, vatt.losses, vatt.tasks, vatt.train.loop, vatt.experiment
        import vatt.bench, vatt.bench.cli, vatt.bench.step, vatt.bench.suite
        print("RESULT:" + json.dumps("tensorflow" in sys.modules))
    """)
    assert out is False
