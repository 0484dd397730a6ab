"""Issue 23.18: a table of more than 100 MB downloads whole over HTTP in every file format, at
the speed of the disk and the network (a download once stopped after about 7 MB while a server
thread spun a core). Each file is read back and every row counted."""
import json
import pathlib
import urllib.request
import zipfile

import pyarrow.parquet as pq
import pytest

from conftest import Tverr

ROWS = 1_000_000
POINTS = 200_000


def write_table(path: pathlib.Path):
    with open(path, "w", encoding="utf-8") as f:
        f.write("id;navn;adresse;merknad;belop\n")
        for i in range(ROWS):
            f.write(f"{i};Navn nummer {i:07d} Ødegård;Storgata {i % 997} 2317 Hamar;"
                    f"en merknad som gjør raden lengre enn hundre byte {i:09d};{i % 1000},50\n")


def write_points(path: pathlib.Path):
    with open(path, "w", encoding="utf-8") as f:
        f.write('{"type":"FeatureCollection","features":[')
        for i in range(POINTS):
            if i:
                f.write(",")
            f.write(json.dumps({"type": "Feature", "geometry": {"type": "Point", "coordinates": [10.5 + i * 1e-6, 60.7 + i * 1e-6]},
                                "properties": {"id": i, "navn": f"Punkt {i}"}}))
        f.write("]}")


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    root = tmp_path_factory.mktemp("big")
    t = Tverr(root / "data", env={"TVERR_QUERY_SECONDS": "900"})
    t.run("org", "create", "test", "--name", "Test", "--orgnr", "970540008")
    t.run("department", "create", "test/data", "--name", "Data")
    table = root / "stor.csv"
    write_table(table)
    assert table.stat().st_size > 100 * 1024 * 1024
    t.run("ingest", "test/stor", str(table), "--create", "--department", "data", "--title", "Stor", "--classification", "open")
    points = root / "punkter.geojson"
    write_points(points)
    t.run("ingest", "test/punkter", str(points), "--create", "--department", "data", "--title", "Punkter", "--classification", "open")
    with t.serve() as base:
        yield base, root


def download(base, dataset, fmt, to: pathlib.Path) -> int:
    with urllib.request.urlopen(f"{base}/api/v1/datasets/{dataset}/rows?format={fmt}", timeout=900) as r, open(to, "wb") as out:
        while chunk := r.read(1 << 20):
            out.write(chunk)
    return to.stat().st_size


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "parquet", "xlsx"])
def test_a_table_over_100_mb_downloads_whole(big, fmt):
    base, root = big
    path = root / f"stor.{fmt}"
    size = download(base, "test/stor", fmt, path)
    if fmt == "csv":
        assert size > 100 * 1024 * 1024
        with open(path, encoding="utf-8") as f:
            assert sum(1 for _ in f) == ROWS + 1
    elif fmt == "ndjson":
        with open(path, encoding="utf-8") as f:
            ids = {json.loads(line)["id"] for line in f}
        assert ids == set(range(ROWS))
    elif fmt == "parquet":
        table = pq.read_table(path, columns=["id"])
        assert table.num_rows == ROWS
        assert sorted(table.column("id").to_pylist()) == list(range(ROWS))
    else:
        # An Excel sheet's rows, counted in the sheet's XML without loading it.
        rows, tail = 0, b""
        with zipfile.ZipFile(path) as z:
            with z.open("xl/worksheets/sheet1.xml") as sheet:
                while chunk := sheet.read(1 << 20):
                    text = tail + chunk
                    rows += text.count(b"<row ")
                    # A tag cut between two chunks is counted once, with the next one: four
                    # bytes are too few to hold a whole one.
                    tail = text[-4:]
        assert rows == ROWS + 1


def test_geojson_downloads_whole(big):
    base, root = big
    path = root / "punkter.geojson"
    download(base, "test/punkter", "geojson", path)
    with open(path, encoding="utf-8") as f:
        features = json.load(f)["features"]
    assert len(features) == POINTS
    assert {f["properties"]["id"] for f in features} == set(range(POINTS))
