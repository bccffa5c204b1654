"""Imports point down: every module may import only modules of its own layer or below.

`LAYERS` is the layer list of the README's Architecture section, bottom first. A module's
layer is that of the longest prefix listed; every module of the project must have one.
"""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).parent.parent
LAYERS = (
    ("configs",),
    ("fnevr_jax", "fnevr_jax.ops", "fnevr_jax.rendering", "fnevr_jax.torch_io",
     "fnevr_jax.data.shards", "fnevr_jax.pretrained.files", "fnevr_jax.checkpoint_io",
     "fnevr_jax.sharding", "fnevr_jax.cli", "fnevr_jax.download"),
    ("fnevr_jax.models", "fnevr_jax.pretrained", "fnevr_jax.data", "fnevr_jax.media",
     "fnevr_jax.nerf_head.network"),
    ("fnevr_jax.losses", "fnevr_jax.metrics", "fnevr_jax.convert", "fnevr_jax.parity",
     "fnevr_jax.inference", "fnevr_jax.nerf_head.losses"),
    ("fnevr_jax.training.tasks", "fnevr_jax.training.fnevr_task", "fnevr_jax.training.summaries",
     "fnevr_jax.nerf_head.task"),
    ("fnevr_jax.loader", "fnevr_jax.api", "fnevr_jax.nerf_head", "fnevr_jax.export"),
    ("fnevr_jax.training.trainer",),
    ("data_pipelines",),
    ("fnevr_jax.animation", "fnevr_jax.notebook", "fnevr_jax.demo"),
    ("train", "eval", "animate", "benchmarks"),
)
PACKAGES = ("configs", "fnevr_jax", "data_pipelines", "benchmarks")
SCRIPTS = ("train", "eval", "animate")


def layer(module):
    """Index in LAYERS of the longest listed prefix of `module` (None if unlisted)."""
    best, found = -1, None
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, found = len(name), i
    return found


def module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules():
    files = [ROOT / f"{s}.py" for s in SCRIPTS]
    for package in PACKAGES:
        files += sorted((ROOT / package).rglob("*.py"))
    return {module_name(f): f for f in files}


def imports(source, module, is_package, known):
    """Project modules imported anywhere in `source` (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")[:len(module.split(".")) - node.level + is_package]
                base = ".".join(parts + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                     for a in node.names]
        else:
            continue
        found |= {n for n in names if n.split(".")[0] in PACKAGES + SCRIPTS}
    return found


def violations(modules):
    """(importer, imported) pairs where the imported module sits in a higher layer."""
    bad = []
    for name, path in modules.items():
        source = path.read_text() if isinstance(path, pathlib.Path) else path
        is_package = isinstance(path, pathlib.Path) and path.name == "__init__.py"
        for imported in imports(source, name, is_package, modules):
            if layer(imported) is None or layer(imported) > layer(name):
                bad.append((name, imported))
    return sorted(bad)


def test_every_module_has_a_layer():
    unlisted = [m for m in project_modules() if layer(m) is None]
    assert not unlisted, f"add these modules to LAYERS (and the README): {unlisted}"


def test_imports_point_down():
    bad = violations(project_modules())
    assert not bad, "imports against the layer order (importer, imported): " + repr(bad)


@pytest.mark.parametrize("module, source", [
    ("fnevr_jax.models.generator", "from fnevr_jax.training import trainer"),
    ("fnevr_jax.ops.resize", "def f():\n    import fnevr_jax.api"),
    ("fnevr_jax.data.loaders", "from data_pipelines import synthetic"),
    ("fnevr_jax.models.fvr", "from .. import loader"),
])
def test_a_wrong_import_is_found(module, source):
    modules = {**project_modules(), module: source}
    assert violations(modules), source
