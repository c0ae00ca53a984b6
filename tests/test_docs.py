"""The repository stands alone: its documents say what a newcomer needs, and point only to
documents inside it."""

import re

from tests.live import ROOT

TEXT_FILES = [
    p
    for folder in ("qrevents", "models", "tests", "bench", "docs", "deploy")
    for p in (ROOT / folder).rglob("*")
    if p.suffix in {".py", ".md", ".js", ".mjs", ".html", ".css", ".conf", ".service"}
    and "node_modules" not in p.parts  # third-party packages the tests install (tests/js)
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


def contract_section(number):
    text = (ROOT / "docs" / "CONTRACT.md").read_text()
    return re.split(r"\n## ", text.split(f"\n## {number}. ", 1)[1], maxsplit=1)[0]


def table_rows(section):
    """The cells of a markdown table's body rows."""
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows[1:]]


def test_contract_lists_every_event_with_the_id_and_keys_the_server_sends():
    """The event catalog of /openapi.json is checked against live streams
    (tests/test_openapi.py); the contract's table must say the same."""
    from qrevents.openapi import build_spec

    catalog = build_spec()["paths"]["/events/stream"]["get"]["x-sse-events"]
    documented = {}
    for type_cell, id_cell, keys_cell in table_rows(contract_section(3)):
        event_id = None if id_cell == "none" else re.sub(r"<[^>]*>", "<>", id_cell.strip("`"))
        keys = set(re.findall(r"`(\w+)`", keys_cell))
        documented[type_cell.strip("`")] = (event_id, keys)
    served = {
        name: (
            None if entry["id"] is None else re.sub(r"<[^>]*>", "<>", entry["id"]),
            set(entry["data"]["required"]),
        )
        for name, entry in catalog.items()
    }
    assert documented == served


def test_contract_names_every_reason_a_stream_is_closed_with():
    from qrevents.events import CLOSE_REASONS

    reasons = {row[0].strip("`") for row in table_rows(contract_section(5))}
    assert reasons == set(CLOSE_REASONS)


def test_contract_names_every_error_code_the_code_raises():
    codes = set()
    for path in (ROOT / "qrevents").rglob("*.py"):
        codes.update(re.findall(r'\bcode(?:=|, )"([a-z_]+)"', path.read_text()))
        codes.update(re.findall(r'status, code, message = \d+, "([a-z_]+)"', path.read_text()))
    assert {"validation_failed", "invalid_signature", "transaction_id_reused"} <= codes
    errors_table = " ".join(cell for row in table_rows(contract_section(6)) for cell in row)
    assert not {code for code in codes if f"`{code}`" not in errors_table}
