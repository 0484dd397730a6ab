"""GeoParquet 1.1 metadata on Parquet exports, read back by pyarrow and GeoPandas (which reads
the `geo` metadata itself, without asking Tverr for the CRS). The GDAL builds reachable here
(Debian 12's 3.6, pyogrio's wheels) have no Parquet driver, so GDAL and QGIS are not tested."""
import io
import json
import urllib.request

import geopandas
import pyarrow.parquet as pq
import pytest
import shapely

from conftest import Tverr


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    t = Tverr(tmp_path_factory.mktemp("geoparquet") / "data")
    t.run("demo", "--persons", "400")
    with t.serve() as base:
        yield t, base


def fetch(base: str, path: str) -> bytes:
    with urllib.request.urlopen(base + path) as r:
        return r.read()


def geo_metadata(data: bytes) -> dict:
    meta = pq.read_metadata(io.BytesIO(data)).metadata
    assert b"geo" in meta, "no GeoParquet metadata"
    return json.loads(meta[b"geo"])


def test_rest_parquet_carries_geoparquet_metadata(served):
    _, base = served
    data = fetch(base, "/api/v1/datasets/hamar/reguleringsplaner/rows?format=parquet")
    geo = geo_metadata(data)
    assert geo["version"] == "1.1.0"
    assert geo["primary_column"] == "geometry"
    column = geo["columns"]["geometry"]
    assert column["encoding"] == "WKB"
    assert column["geometry_types"] == ["Polygon"] or set(column["geometry_types"]) <= {"Polygon", "MultiPolygon"}
    assert column["crs"]["id"] == {"authority": "EPSG", "code": 25833}
    frame = geopandas.read_parquet(io.BytesIO(data))
    assert frame.crs.to_epsg() == 25833
    minx, miny, maxx, maxy = frame.total_bounds
    bbox = column["bbox"]
    assert (minx, miny, maxx, maxy) == pytest.approx(tuple(bbox))
    assert 250_000 < minx < maxx < 350_000 and 6_700_000 < miny < maxy < 6_800_000
    assert len(frame) == len(json.loads(fetch(base, "/api/v1/datasets/hamar/reguleringsplaner/rows?limit=10000"))["rows"])


def test_a_crs_asked_for_is_the_crs_declared(served):
    _, base = served
    data = fetch(base, "/api/v1/datasets/hamar/barnehager/rows?format=parquet&crs=EPSG:4326")
    geo = geo_metadata(data)
    column = geo["columns"]["geometry"]
    assert "crs" not in column, "GeoParquet reads a missing crs as OGC:CRS84, longitude first as Tverr writes"
    assert column["geometry_types"] == ["Point"]
    frame = geopandas.read_parquet(io.BytesIO(data))
    assert frame.crs.to_string() in ("OGC:CRS84", "EPSG:4326")
    lon, lat = frame.geometry.iloc[0].x, frame.geometry.iloc[0].y
    assert 10.5 < lon < 11.6 and 60.5 < lat < 61.0
    utm = geopandas.read_parquet(io.BytesIO(fetch(base, "/api/v1/datasets/hamar/barnehager/rows?format=parquet")))
    assert utm.crs.to_epsg() == 25833
    assert shapely.get_x(utm.to_crs(4326).geometry.iloc[0]) == pytest.approx(lon, abs=1e-6)


def test_cli_parquet_export_carries_the_same_metadata(served, tmp_path):
    t, base = served
    out = tmp_path / "planer.parquet"
    with open(out, "wb") as f:
        import subprocess
        from conftest import tverr_bin
        subprocess.run([tverr_bin(), "export", "hamar/reguleringsplaner", "--format", "parquet"], env=t.env, stdout=f, check=True)
    data = out.read_bytes()
    assert geo_metadata(data) == geo_metadata(fetch(base, "/api/v1/datasets/hamar/reguleringsplaner/rows?format=parquet"))


def test_a_dataset_without_geometry_has_no_geo_metadata(served):
    _, base = served
    data = fetch(base, "/api/v1/datasets/hamar/barnehagepriser/rows?format=parquet")
    assert b"geo" not in (pq.read_metadata(io.BytesIO(data)).metadata or {})
