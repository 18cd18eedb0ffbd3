"""The project's documents stand alone: nothing tracked sends a reader outside the repository,
and the README links the architecture document, which names every folder of the package
layout."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUTSIDE = re.compile(r"\.\./shared|DESIGN\.md|DESIGN section")


def _tracked() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    return [REPO / name for name in listed if not name.endswith((".png", ".npz", ".safetensors"))]


def test_no_tracked_file_points_outside_the_repository() -> None:
    # Prepare / Execute
    hits = [
        f"{path.relative_to(REPO)}:{number}"
        for path in _tracked()
        if path.is_file() and path != Path(__file__).resolve()
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if OUTSIDE.search(line)
    ]

    # Assert
    assert hits == []


def test_the_readme_links_the_architecture_which_covers_the_layout() -> None:
    # Prepare
    readme = (REPO / "README.md").read_text()
    architecture = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    layers = sorted(
        p.name for p in (REPO / "services" / "copur").iterdir() if (p / "__init__.py").is_file()
    )

    # Assert
    assert "docs/ARCHITECTURE.md" in readme
    assert layers == ["cli", "evaluation", "operations", "roles", "science", "transport"]
    for layer in layers:
        assert f"copur.{layer}" in architecture, f"docs/ARCHITECTURE.md does not describe {layer}/"
    sections = ("Roles and data flow", "Layout and import rules", "Algorithms", "Adding things")
    for section in sections:
        assert f"## {section}" in architecture
