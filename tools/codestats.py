"""Code-shape figures for a source tree: file and function lengths, long lines, documented public
API.

Usage: ``python tools/codestats.py services clients`` (prints one block of figures; ``--json``
for a dict). Skips generated protobuf stubs (``*_pb2*.py``). A function's length counts its lines
from ``def`` to its last statement; "public" means a module-level or class-level name not
starting with ``_`` in a module or class whose own name is public; ``@overload`` stubs do not
count."""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

import numpy as np


def _files(roots: list[str]) -> list[Path]:
    out: list[Path] = []
    for root in roots:
        out += [p for p in sorted(Path(root).rglob("*.py")) if "_pb2" not in p.name]
    return out


def _is_overload(node: ast.AST) -> bool:
    decorators = getattr(node, "decorator_list", [])
    return any(ast.unparse(d).split(".")[-1] == "overload" for d in decorators)


def _public_defs(tree: ast.Module) -> list[ast.AST]:
    found: list[ast.AST] = []
    for node in tree.body:
        if isinstance(
            node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
        ) and not node.name.startswith("_"):
            found.append(node)
            if isinstance(node, ast.ClassDef):
                found += [
                    n
                    for n in node.body
                    if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                    and not n.name.startswith("_")
                ]
    return found


def stats(roots: list[str]) -> dict[str, float]:
    """The figures for every non-generated .py file under ``roots``."""
    file_lines: list[int] = []
    func_lines: list[int] = []
    code_lines = long_lines = 0
    public = documented = 0
    for path in _files(roots):
        text = path.read_text()
        lines = text.splitlines()
        file_lines.append(len(lines))
        code = [ln for ln in lines if ln.strip() and not ln.strip().startswith("#")]
        code_lines += len(code)
        long_lines += sum(len(ln) > 100 for ln in code)
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                func_lines.append((node.end_lineno or node.lineno) - node.lineno + 1)
        for node in _public_defs(tree):
            public += 1
            documented += ast.get_docstring(node) is not None  # type: ignore[arg-type]
    f, g = np.array(file_lines), np.array(func_lines)
    return {
        "files": len(f),
        "file_lines_median": float(np.median(f)),
        "file_lines_p90": round(float(np.percentile(f, 90)), 1),
        "file_lines_max": int(f.max()),
        "files_over_400": int((f > 400).sum()),
        "functions": len(g),
        "function_lines_median": float(np.median(g)),
        "function_lines_p90": round(float(np.percentile(g, 90)), 1),
        "function_lines_max": int(g.max()),
        "functions_over_60": int((g > 60).sum()),
        "code_lines": code_lines,
        "code_lines_over_100_chars_pct": round(100 * long_lines / max(code_lines, 1), 1),
        "public_defs": public,
        "public_defs_documented_pct": round(100 * documented / max(public, 1), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", help="source folders to measure")
    parser.add_argument("--json", action="store_true", help="print a JSON object instead of lines")
    args = parser.parse_args()
    figures = stats(args.roots)
    if args.json:
        json.dump(figures, sys.stdout, indent=2)
        print()
    else:
        for key, value in figures.items():
            print(f"{key:34s} {value}")


if __name__ == "__main__":
    main()
