"""What Tverr writes is read back by independent readers and equals what Tverr's SQL returns."""
import csv
import datetime
import io
import json
import os
import uuid

import openpyxl
import pyarrow.parquet as pq
from deltalake import DeltaTable

EXPECTED = [
    ("01817545781", "Bjørn Ærø", datetime.date(1975, 1, 1), -12.25, False),
    ("17858012392", "Åse Ødegård", datetime.date(1980, 5, 17), 1234.5, True),
]
COLUMNS = ["fodselsnummer", "navn", "fodt", "belop", "aktiv"]


def rows_of(table):
    d = table.to_pydict()
    return sorted(zip(*(d[c] for c in COLUMNS)))


def sql_rows(tverr):
    out = tverr.run("sql", "SELECT * FROM test.people ORDER BY fodselsnummer", "--format", "json")
    return [tuple(r[c] for c in COLUMNS) for r in json.loads(out)]


def test_delta_table_read_by_deltalake_python(tverr):
    tverr.setup_people()
    table = DeltaTable(str(tverr.data / "lake" / "test" / "people"))
    assert table.version() == 0
    assert rows_of(table.to_pyarrow_table()) == EXPECTED
    history = table.history()
    assert history[0]["tverr.actor"] == "pytest"
    assert history[0]["tverr.source"] == "people.csv"


def test_exports_read_by_csv_openpyxl_pyarrow_json(tverr, tmp_path):
    tverr.setup_people()
    expected_sql = sql_rows(tverr)
    assert [r[0] for r in expected_sql] == [r[0] for r in EXPECTED]

    text = tverr.run("export", "test/people", "--format", "csv")
    got = [(r["fodselsnummer"], r["navn"], datetime.date.fromisoformat(r["fodt"]), float(r["belop"]), r["aktiv"] == "true")
           for r in csv.DictReader(io.StringIO(text))]
    assert sorted(got) == EXPECTED

    xlsx = tmp_path / "p.xlsx"
    tverr.run("export", "test/people", "--format", "xlsx", "--out", str(xlsx))
    sheet = openpyxl.load_workbook(xlsx).active
    rows = list(sheet.iter_rows(values_only=True))
    assert list(rows[0]) == COLUMNS
    got = sorted((r[0], r[1], r[2].date(), r[3], r[4]) for r in rows[1:])
    assert got == EXPECTED

    parquet = tmp_path / "p.parquet"
    tverr.run("export", "test/people", "--format", "parquet", "--out", str(parquet))
    assert rows_of(pq.read_table(parquet)) == EXPECTED

    ndjson = tverr.run("export", "test/people", "--format", "ndjson")
    got = sorted((r["fodselsnummer"], r["navn"], datetime.date.fromisoformat(r["fodt"]), r["belop"], r["aktiv"])
                 for r in map(json.loads, ndjson.splitlines()))
    assert got == EXPECTED
    arr = json.loads(tverr.run("export", "test/people", "--format", "json"))
    assert len(arr) == 2


def test_s3_lake_read_by_deltalake_python(tmp_path):
    from conftest import Tverr
    assert "TVERR_TEST_S3_ENDPOINT" in os.environ, "run the tests with scripts/test, which starts the S3 server"
    endpoint = os.environ["TVERR_TEST_S3_ENDPOINT"]
    bucket = os.environ["TVERR_TEST_S3_BUCKET"]
    prefix = f"py-{uuid.uuid4().hex}"
    aws = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}
    t = Tverr(tmp_path / "data", {"TVERR_STORAGE": f"s3://{bucket}/{prefix}", **aws})
    t.setup_people()
    table = DeltaTable(f"s3://{bucket}/{prefix}/test/people",
                       storage_options={"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test",
                                        "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1",
                                        "AWS_ALLOW_HTTP": "true", "AWS_S3_ALLOW_UNSAFE_RENAME": "true"})
    assert rows_of(table.to_pyarrow_table()) == EXPECTED
