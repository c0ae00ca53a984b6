"""The unit tests of qrevents.js and the dashboard's modules (``tests/js``), run by Node's
own test runner: one pytest test per file, so a failure names its file."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
JS_TESTS = sorted((ROOT / "tests" / "js").glob("*.test.mjs"))


def node_or_skip():
    """Node 20+ (its test runner and ES module detection), or skip; CI must have it."""
    node = shutil.which("node")
    version = ""
    if node:
        version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout
    if not version.startswith("v") or int(version[1:].split(".")[0]) < 20:
        reason = f"the qrevents.js unit tests need Node.js 20 or newer (found: {version or 'none'})"
        if os.environ.get("QREVENTS_REQUIRE_ALL_BACKENDS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return node


@pytest.mark.parametrize("test_file", JS_TESTS, ids=lambda path: path.name)
def test_javascript_unit_tests_pass(test_file):
    node = node_or_skip()
    result = subprocess.run(
        [node, "--test", str(test_file)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]


def test_javascript_unit_tests_exist():
    assert {path.name for path in JS_TESTS} >= {
        "client.test.mjs",
        "sse_parser.test.mjs",
        "dashboard_state.test.mjs",
    }
