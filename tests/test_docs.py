"""The repository stands alone: its documents say what a newcomer needs, and point only to
documents inside it."""

import re

from tests.live import ROOT

TEXT_FILES = [
    p
    for folder in ("qrevents", "models", "tests", "bench", "docs", "deploy")
    for p in (ROOT / folder).rglob("*")
    if p.suffix in {".py", ".md", ".js", ".mjs", ".html", ".css", ".conf", ".service"}
] + [ROOT / name for name in ("README.md", "app.py", "gunicorn.conf.py", "Makefile")]
# Names of documents kept outside this repository, and the section sign they were cited with.
OUTSIDE = re.compile(r"\bSPEC\b|PITFALLS|\bseed\b|§|\bissue \d", re.IGNORECASE)


def readme_section(title):
    text = (ROOT / "README.md").read_text()
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_no_file_points_to_a_document_outside_the_repository():
    this_file = ROOT / "tests" / "test_docs.py"
    cited = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in TEXT_FILES
        if path != this_file
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert not cited, "\n".join(cited)


def test_every_document_path_named_exists():
    named = {
        match
        for path in TEXT_FILES
        for match in re.findall(r"\b((?:docs|deploy)/[\w.-]+\.\w+)", path.read_text())
    }
    assert "docs/CONTRACT.md" in named
    assert not {name for name in named if not (ROOT / name).exists()}


def test_readme_routes_table_lists_every_route_the_app_serves(app):
    table = re.sub(r"<[^>]*>", "<>", readme_section("REST API"))
    served = {
        re.sub(r"<[^>]*>", "<>", rule.rule)
        for rule in app.url_map.iter_rules()
        if not rule.rule.startswith(("/api/", "/static/"))
    }
    assert {"/metrics", "/openapi.json", "/dashboard", "/health"} <= served
    listed = set(re.findall(r"(/[^\s`?]*)", table))
    assert not served - listed


def test_readme_sample_stream_shows_every_event_it_promises():
    sample = readme_section("Watch a payment arrive live")
    for event in ("qr_created", "qr_payment", "account_balance_update", "qr_status_change"):
        assert f"id: {event if event != 'account_balance_update' else 'balance_update'}_" in sample
        assert f"event: {event}\n" in sample


def test_shell_lines_a_reader_pastes_have_no_placeholder_that_is_a_redirect():
    """``<qrId>`` in a shell line redirects standard input from a file named qrId."""
    for path in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for block in re.findall(r"```sh\n(.*?)```", path.read_text(), re.DOTALL):
            for line in block.splitlines():
                code = re.sub(r"'[^']*'|\"[^\"]*\"", "", line.split(" #", 1)[0])
                assert not re.search(r"<\w*>?", code), f"{path.name}: {line}"


def test_readme_says_where_the_admin_key_is_and_what_its_routes_take():
    text = (ROOT / "README.md").read_text()
    assert "instance/admin_api_key.secret" in text and "QREVENTS_ADMIN_API_KEY" in text
    for body in ('{"name": "Mi Comercio", "currency": "BOB"}', '"userId": 1'):
        assert body in text


def test_deployment_settings_name_the_metrics_folder_of_several_workers():
    settings = (ROOT / "docs" / "DEPLOYMENT.md").read_text().split("## Settings", 1)[1]
    assert "`PROMETHEUS_MULTIPROC_DIR`" in settings.split("\n## ", 1)[0]
