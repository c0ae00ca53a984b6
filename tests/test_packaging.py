"""The server as a package: runtime requirements apart from development ones, and
``pip install .`` giving ``qrevents`` (with its static files and its version) and ``models``."""

import ast
import importlib.metadata
import re
import shutil
import subprocess
import sys
import venv

from tests.live import ROOT

DEVELOPMENT_ONLY = {
    "pytest",
    "playwright",
    "ruff",
    "hypothesis",
    "schemathesis",
    "jsonschema-rs",
    "uvloop",
    "flask-sse",
    "six",
    "wheel",
}
RUNTIME_SOURCES = ["qrevents", "models", "app.py", "gunicorn.conf.py"]


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(filename):
    """``{canonical name: version}`` of a requirements file's ``name==version`` lines."""
    found = {}
    for line in (ROOT / filename).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            name, _, version = line.partition("==")
            assert version, f"{filename}: {line!r} is not pinned with =="
            found[canonical(name)] = version
    return found


def runtime_imports():
    """Top-level names of every module imported by the server's code, at any depth."""
    names = set()
    for source in RUNTIME_SOURCES:
        path = ROOT / source
        for file in [path] if path.is_file() else path.rglob("*.py"):
            for node in ast.walk(ast.parse(file.read_text())):
                if isinstance(node, ast.Import):
                    names.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"qrevents", "models"}


def test_runtime_requirements_hold_no_test_lint_or_benchmark_package():
    runtime = pins("requirements.txt")
    assert not DEVELOPMENT_ONLY & set(runtime)
    assert "-r requirements.txt" in (ROOT / "requirements-dev.txt").read_text().splitlines()
    assert DEVELOPMENT_ONLY <= set(pins("requirements-dev.txt"))


def test_everything_the_server_imports_is_a_runtime_requirement():
    distributions = importlib.metadata.packages_distributions()
    runtime = pins("requirements.txt")
    imported = runtime_imports()
    assert {"flask", "gevent", "peewee", "jwt", "playhouse"} <= imported  # the scan sees them
    missing = {
        name: distributions.get(name)
        for name in imported
        if not {canonical(d) for d in distributions.get(name, [])} & set(runtime)
    }
    assert not missing, f"imported at runtime but not in requirements.txt: {missing}"


def test_make_run_installs_the_runtime_only_and_make_test_and_bench_the_development_set():
    def planned(target):
        return subprocess.run(
            ["make", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout

    assert "-r requirements.txt" in planned("run")
    assert "requirements-dev.txt" not in planned("run")
    for target in ("test", "bench"):
        assert "-r requirements-dev.txt" in planned(target)


def test_pip_install_gives_the_server_with_its_static_files_and_version(tmp_path):
    """Built from a copy holding only what a source release holds, installed into a fresh
    venv with no downloads (its dependencies come from this venv, on PYTHONPATH)."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "requirements.txt"):
        shutil.copy(ROOT / name, source / name)
    for package in ("qrevents", "models"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__py*"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist", source],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("qrevents-*.whl")
    fresh = tmp_path / "fresh"
    venv.create(fresh)  # without pip of its own (seconds): this venv's pip installs into it
    subprocess.run(
        pip + ["--python", fresh / "bin" / "python", "install", "--no-deps", "--no-index", wheel],
        check=True,
        capture_output=True,
    )
    dependencies = next(p for p in sys.path if p.endswith("site-packages"))
    env = {"PYTHONPATH": dependencies, "QREVENTS_INSTANCE_PATH": str(tmp_path / "instance")}
    probe = subprocess.run(
        [fresh / "bin" / "python", "-c", INSTALLED_PROBE],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    found = dict(line.split("=", 1) for line in probe.stdout.splitlines())
    assert found["location"].startswith(str(fresh))
    assert found["version"] == found["metadata"] == found["health"] == found["openapi"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", found["version"])
    shipped = {
        str(p.relative_to(ROOT / "qrevents")) for p in (ROOT / "qrevents/static").rglob("*.*")
    }
    assert set(found["static"].split(",")) == shipped
    assert found["served"] == "200"
    required = (r.partition("==") for r in found["requires"].split(","))
    assert {canonical(name): version for name, _, version in required} == pins("requirements.txt")
    command = subprocess.run(
        [fresh / "bin" / "qrevents", "init-db"], cwd=tmp_path, env=env, capture_output=True
    )
    assert command.stdout.decode().strip() == "database ready", command.stderr


INSTALLED_PROBE = """
import importlib.metadata, pathlib
import models, qrevents
from qrevents import create_app
client = create_app().test_client()
root = pathlib.Path(qrevents.__file__).parent
print("location=" + qrevents.__file__)
print("version=" + qrevents.__version__)
print("metadata=" + importlib.metadata.version("qrevents"))
print("health=" + client.get("/health").get_json()["data"]["version"])
print("openapi=" + client.get("/openapi.json").get_json()["info"]["version"])
print("static=" + ",".join(sorted(str(p.relative_to(root)) for p in root.glob("static/**/*.*"))))
print("served=" + str(client.get("/static/dashboard/app.js").status_code))
print("requires=" + ",".join(importlib.metadata.requires("qrevents")))
"""
