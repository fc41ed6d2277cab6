"""The built wheel, installed in a fresh virtual environment, works from any folder: the CLI
starts and the shipped study files load through the package, not from a source tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Only what the wheel is built from: no tests, caches, stores or earlier builds.
_NOT_BUILT_FROM = shutil.ignore_patterns(
    ".*", "__pycache__", "build", "dist", "*.egg-info", "*.db", "mlruns", "mlartifacts",
    "tests", "bench", "data")


def _run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    # No PYTHONPATH: the source tree must not be importable, only the installed wheel.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.slow
def test_the_installed_wheel_runs_the_quick_start_study_from_any_folder(
        tmp_path: Path) -> None:
    # Built from a copy, so the build's build/ and *.egg-info stay out of the checkout.
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=_NOT_BUILT_FROM)
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-q", "-w", tmp_path / "dist", source, cwd=tmp_path)
    [wheel] = (tmp_path / "dist").glob("han_search-*.whl")

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
         "-q", wheel, cwd=tmp_path)
    # The dependencies (torch, optuna, mlflow...) come from this interpreter's environment:
    # its site-packages as a plain path, so its .pth files (an editable install) do not run.
    paths = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    target = Path(sysconfig.get_path("purelib", vars={"base": env_dir, "platbase": env_dir}))
    (target / "dependencies.pth").write_text("\n".join(sorted(paths)) + "\n", encoding="utf-8")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    scripts = python.parent
    help_text = _run(scripts / "han-search", "run", "--help", cwd=elsewhere).stdout
    assert "--config" in help_text and "--study" in help_text
    loaded = _run(python, "-c", (
        "import search; from search.studyfile import builtin_study_path, load_study_file; "
        "path = builtin_study_path(); spec = load_study_file(path); "
        "print(search.__file__); print(path); print(spec.name, len(spec.space))"),
        cwd=elsewhere).stdout.splitlines()
    package, path, summary = loaded
    assert Path(package).is_relative_to(target), package  # the wheel's, not the source's
    assert Path(path) == target / "search" / "studies" / "demo.toml"
    assert summary.startswith("demo ")
    # Package data beside the code: the study report's page template.
    assert list((target / "search" / "views" / "templates").glob("*.j2"))
