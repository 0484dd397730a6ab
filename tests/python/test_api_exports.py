"""What the REST rows route streams in every format is read back by independent readers (csv,
openpyxl, pyarrow, json) and equals the SQL result of the same question over HTTP."""
import csv
import io
import json
import urllib.error
import urllib.parse
import urllib.request

import openpyxl
import pyarrow.parquet as pq
import pytest

from conftest import Tverr

PURPOSE = "byggesaksbehandling"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    t = Tverr(tmp_path_factory.mktemp("api") / "data")
    t.run("demo", "--persons", "400")
    token = t.run("token", "create", "--user", "ola").strip()
    with t.serve() as base:
        yield base, token


def fetch(base, token, path, body=None):
    headers = {"Authorization": f"Bearer {token}", "Tverr-Purpose": PURPOSE}
    if body is not None:
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(base + path, data=body, headers=headers)
    with urllib.request.urlopen(req) as r:
        return r.headers, r.read()


def sql(base, token, query):
    _, body = fetch(base, token, "/api/v1/sql", json.dumps({"sql": query}).encode())
    return json.loads(body)["rows"]


def rows_url(dataset, **params):
    return f"/api/v1/datasets/{dataset}/rows?" + urllib.parse.urlencode(params)


COLUMNS = ["fodselsnummer", "fornavn", "postnummer"]
WHERE = "postnummer <> '2315'"


def expected(base, token):
    rows = sql(base, token, f"SELECT {', '.join(COLUMNS)} FROM hamar.innbyggere WHERE {WHERE} ORDER BY fodselsnummer")
    assert len(rows) > 100
    return [tuple(r[c] for c in COLUMNS) for r in rows]


def params(fmt, **extra):
    return dict(select=",".join(COLUMNS), where=WHERE, order_by="fodselsnummer", format=fmt, **extra)


def test_csv_with_norwegian_excel_dialect(server):
    base, token = server
    headers, body = fetch(base, token, rows_url("hamar/innbyggere", **params("csv", delimiter=";", bom="true")))
    assert headers["Content-Disposition"].startswith('attachment; filename="hamar-innbyggere-v0.csv"')
    assert body.startswith("\ufeff".encode())
    got = [tuple(r) for r in csv.reader(io.StringIO(body.decode("utf-8-sig")), delimiter=";")]
    assert got[0] == tuple(COLUMNS)
    assert got[1:] == expected(base, token)


def test_xlsx_parquet_ndjson(server):
    base, token = server
    want = expected(base, token)
    _, body = fetch(base, token, rows_url("hamar/innbyggere", **params("xlsx")))
    sheet = openpyxl.load_workbook(io.BytesIO(body)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert list(rows[0]) == COLUMNS
    assert [tuple(r) for r in rows[1:]] == want

    _, body = fetch(base, token, rows_url("hamar/innbyggere", **params("parquet")))
    table = pq.read_table(io.BytesIO(body)).to_pydict()
    assert list(zip(*(table[c] for c in COLUMNS))) == want

    _, body = fetch(base, token, rows_url("hamar/innbyggere", **params("ndjson")))
    got = [tuple(json.loads(line)[c] for c in COLUMNS) for line in body.decode().splitlines()]
    assert got == want


def test_json_pages_with_cursor(server):
    base, token = server
    want = expected(base, token)
    got, path = [], rows_url("hamar/innbyggere", **params("json", limit=50))
    while path:
        _, body = fetch(base, token, path)
        page = json.loads(body)
        got.extend(tuple(r[c] for c in COLUMNS) for r in page["rows"])
        path = page["next"]
    assert got == want


def test_geojson_and_decimal_commas(server):
    base, token = server
    want = sql(base, token, "SELECT navn, kapasitet FROM hamar.barnehager ORDER BY navn")
    _, body = fetch(base, token, rows_url("hamar/barnehager", order_by="navn", format="geojson"))
    collection = json.loads(body)
    assert collection["type"] == "FeatureCollection"
    assert collection["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::25833"
    features = collection["features"]
    assert [(f["properties"]["navn"], f["properties"]["kapasitet"]) for f in features] == [(r["navn"], r["kapasitet"]) for r in want]
    assert all(f["geometry"]["type"] == "Point" and len(f["geometry"]["coordinates"]) == 2 for f in features)

    values = sql(base, token, "SELECT sensor_id, tidspunkt, verdi FROM hias.vannkvalitet ORDER BY sensor_id, tidspunkt LIMIT 500")
    _, body = fetch(base, token, rows_url("hias/vannkvalitet", select="sensor_id,verdi", order_by="sensor_id,tidspunkt",
                                          limit=500, format="csv", delimiter=";", decimal=","))
    got = list(csv.DictReader(io.StringIO(body.decode()), delimiter=";"))
    assert len(got) == len(values) == 500
    assert any("," in r["verdi"] for r in got)
    assert [float(r["verdi"].replace(",", ".")) for r in got] == [r["verdi"] for r in values]


def test_errors_are_problems(server):
    base, token = server
    with pytest.raises(urllib.error.HTTPError) as e:
        fetch(base, token, rows_url("hamar/innbyggere", select="finnes_ikke"))
    assert e.value.code == 400
    assert e.value.headers["Content-Type"] == "application/problem+json"
    assert "finnes_ikke" in json.loads(e.value.read())["detail"]
