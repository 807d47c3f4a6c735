"""The repository layout keeps `import http` pointing at the standard library."""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_http_folder_is_not_a_regular_package() -> None:
    assert (ROOT / "http").is_dir()
    assert not (ROOT / "http" / "__init__.py").exists()


def test_import_http_is_the_standard_library_with_the_repo_root_on_sys_path() -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import http, http.client; "
        "print(http.__file__); print(http.client.__file__)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True, check=True).stdout
    http_init, http_client = out.split()
    assert not http_init.startswith(str(ROOT)), http_init
    assert not http_client.startswith(str(ROOT)), http_client
    assert http_init.endswith("http/__init__.py")


def test_run_py_starts_from_the_repo_root() -> None:
    result = subprocess.run([sys.executable, "run.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "openbell" in result.stdout
