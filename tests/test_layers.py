"""The package's layers are executable rules: imports run one way (cli -> study -> run -> domain,
import-linter's contract in pyproject.toml), every module belongs to a layer, imports sit at the
top of modules (except heavy optional packages, each with a comment), and no module uses another
module's private names."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from .conftest import REPO

PACKAGE = REPO / "reddiff_bench"
CONTRACT = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
# packages heavy enough to import only where they are used (seconds of start-up, or optional)
HEAVY = {"wandb", "wandb_workspaces", "diffusers", "lpips", "pytorch_fid", "torchvision", "matplotlib", "sklearn",
         "skimage", "submitit", "transformers"}


def lint_imports(root: Path, config: Path) -> subprocess.CompletedProcess:
    """import-linter on the package found under ``root`` (no cache: nothing written anywhere)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
                           f"sys.exit(lint_imports(config_filename={str(config)!r}, no_cache=True, no_logo=True))"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120)


def modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


def test_the_layer_contract_is_kept():
    proc = lint_imports(REPO, REPO / "pyproject.toml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 kept, 0 broken" in proc.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    """A copy of the package where a solver imports the study layer: the contract must fail and
    name the import."""
    shutil.copytree(PACKAGE, tmp_path / "reddiff_bench", ignore=shutil.ignore_patterns("conf", "assets", "__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    dps = tmp_path / "reddiff_bench" / "solvers" / "dps.py"
    dps.write_text(dps.read_text() + "\nfrom ..study import tables  # noqa: E402, F401\n")
    proc = lint_imports(tmp_path, tmp_path / "pyproject.toml")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "BROKEN" in proc.stdout and "reddiff_bench.solvers.dps -> reddiff_bench.study.tables" in proc.stdout


def test_every_module_belongs_to_one_layer():
    layers = [name.strip() for layer in CONTRACT["contracts"][0]["layers"]
              for name in layer.replace("|", ":").split(":")]
    for module, path in modules():
        if module == "reddiff_bench":
            assert not [n for n in ast.parse(path.read_text()).body if isinstance(n, (ast.Import, ast.ImportFrom))], (
                "the package's __init__ imports nothing: it would tie every layer together")
            continue
        owners = [layer for layer in layers if module == layer or module.startswith(layer + ".")]
        assert len(owners) == 1, f"{module} belongs to {owners or 'no layer'}: add it to [tool.importlinter]"


def function_imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    yield inner


@pytest.mark.parametrize("module,path", modules(), ids=[m for m, _ in modules()])
def test_imports_are_at_the_top_except_heavy_optional_packages(module, path):
    text = path.read_text()
    lines = text.splitlines()
    for node in function_imports(ast.parse(text)):
        name = node.names[0].name if isinstance(node, ast.Import) else "." * node.level + (node.module or "")
        top = name.split(".")[0]
        assert top in HEAVY, f"{module}:{node.lineno} imports {name} inside a function: move it to the top"
        assert "#" in lines[node.lineno - 1], f"{module}:{node.lineno}: say why {name} is imported here (a comment)"


@pytest.mark.parametrize("module,path", modules(), ids=[m for m, _ in modules()])
def test_no_module_uses_another_modules_private_names(module, path):
    """``from x import _name`` and ``obj._name`` on anything but ``self``/``cls`` (torch's own
    private memory-history API, which has no public name, aside)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
            assert not private, f"{module}:{node.lineno} imports private {private} from {node.module}"
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = ast.unparse(node.value)
            if owner in ("self", "cls") or owner == "torch.cuda.memory":
                continue
            pytest.fail(f"{module}:{node.lineno} uses the private {ast.unparse(node)}")


@pytest.mark.slow
def test_every_module_imports_on_its_own():
    """Each module imported first in a fresh interpreter: an import cycle shows up as an error
    only for the module that enters it first."""
    names = [m for m, _ in modules()]
    script = ("import importlib, sys, torch\n"
              f"for name in {names!r}:\n"
              "    for loaded in [m for m in sys.modules if m.startswith('reddiff_bench')]:\n"
              "        del sys.modules[loaded]\n"
              "    try:\n"
              "        importlib.import_module(name)\n"
              "    except Exception as err:\n"
              "        print(f'{name}: {type(err).__name__}: {err}')\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0 and proc.stdout == "", proc.stdout + proc.stderr[-2000:]
