"""Tverr's coordinate transforms and distances agree with PROJ (pyproj), the reference
implementation, over random points across Norway; and tests/geo/known_points.csv, which the
Rust tests use, still holds PROJ's figures."""
import csv
import json
import random
import urllib.parse
import urllib.request

import pytest
from pyproj import Geod, Transformer

from conftest import ROOT, Tverr

N = 400
random.seed(20261127)
# Mainland Norway and its sea areas, longitude first.
POINTS = [(round(random.uniform(4.5, 31.0), 7), round(random.uniform(57.8, 71.2), 7)) for _ in range(N)]
TO = {code: Transformer.from_crs("EPSG:4326", f"EPSG:{code}", always_xy=True) for code in (25832, 25833)}


def feature_collection(points, crs):
    features = [{"type": "Feature", "geometry": {"type": "Point", "coordinates": list(p)}, "properties": {"id": i}}
                for i, p in enumerate(points)]
    return {"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{crs}"}},
            "features": features}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("geo")
    t = Tverr(tmp / "data")
    t.run("org", "create", "test", "--name", "Test", "--orgnr", "970540008")
    t.run("department", "create", "test/kart", "--name", "Kart")
    wgs = tmp / "wgs.geojson"
    wgs.write_text(json.dumps(feature_collection(POINTS, 4326)))
    utm = tmp / "utm.geojson"
    utm.write_text(json.dumps(feature_collection([TO[25833].transform(*p) for p in POINTS], 25833)))
    for name, path in (("wgs", wgs), ("utm", utm)):
        t.run("ingest", f"test/{name}", str(path), "--create", "--department", "kart", "--title", name,
              "--classification", "open")
    with t.serve() as base:
        yield base


def get_json(base, path):
    with urllib.request.urlopen(base + path) as r:
        return json.loads(r.read())


def sql(base, query):
    req = urllib.request.Request(base + "/api/v1/sql", data=json.dumps({"sql": query}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())["rows"]


def xy(wkt):
    x, y = wkt.removeprefix("POINT(").removesuffix(")").split(" ")
    return float(x), float(y)


def test_known_points_file_holds_projs_figures():
    path = ROOT / "tests" / "geo" / "known_points.csv"
    rows = list(csv.DictReader(line for line in path.read_text().splitlines() if not line.startswith("#")))
    assert len(rows) >= 10
    for r in rows:
        lon, lat = float(r["lon"]), float(r["lat"])
        for code in (25832, 25833):
            x, y = TO[code].transform(lon, lat)
            assert abs(x - float(r[f"x{code}"])) < 1e-4 and abs(y - float(r[f"y{code}"])) < 1e-4, r["name"]


@pytest.mark.parametrize("code", [25832, 25833])
def test_sql_transform_from_wgs84_matches_proj(server, code):
    rows = sql(server, f"SELECT id, ST_AsText(ST_Transform(geometry, {code})) AS p FROM test.wgs")
    assert len(rows) == N
    for r in rows:
        x, y = xy(r["p"])
        ex, ey = TO[code].transform(*POINTS[r["id"]])
        assert abs(x - ex) < 1e-3 and abs(y - ey) < 1e-3, (r, ex, ey)


def test_rows_in_wgs84_from_utm_match_proj(server):
    page = get_json(server, "/api/v1/datasets/test/utm/rows?" + urllib.parse.urlencode({"crs": "EPSG:4326", "limit": N}))
    assert page["returned"] == N
    for r in page["rows"]:
        lon, lat = xy(r["geometry"])
        elon, elat = POINTS[r["id"]]
        assert abs(lon - elon) < 1e-8 and abs(lat - elat) < 1e-8, (r, elon, elat)


def test_geojson_export_in_zone_32_matches_proj(server):
    with urllib.request.urlopen(server + "/api/v1/datasets/test/wgs/rows?format=geojson&crs=EPSG:25832") as r:
        assert r.headers["Content-Crs"] == "<http://www.opengis.net/def/crs/EPSG/0/25832>"
        doc = json.loads(r.read())
    assert doc["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::25832"
    assert len(doc["features"]) == N
    for f in doc["features"]:
        x, y = f["geometry"]["coordinates"]
        ex, ey = TO[25832].transform(*POINTS[f["properties"]["id"]])
        assert abs(x - ex) < 1e-3 and abs(y - ey) < 1e-3


@pytest.mark.parametrize("dataset", ["wgs", "utm"])
def test_near_selects_exactly_the_points_within_the_distance_on_the_ellipsoid(server, dataset):
    geod = Geod(ellps="WGS84")
    rng = random.Random(7)
    for _ in range(12):
        centre = POINTS[rng.randrange(N)]
        metres = rng.choice([5_000, 50_000, 150_000, 400_000])
        distances = {i: geod.inv(centre[0], centre[1], p[0], p[1])[2] for i, p in enumerate(POINTS)}
        query = urllib.parse.urlencode({"near": f"{centre[0]},{centre[1]},{metres}", "select": "id", "limit": N})
        got = {r["id"] for r in get_json(server, f"/api/v1/datasets/test/{dataset}/rows?{query}")["rows"]}
        inside = {i for i, d in distances.items() if d <= metres - 0.5}
        outside = {i for i, d in distances.items() if d > metres + 0.5}
        assert inside <= got, (centre, metres, sorted(inside - got))
        assert not (got & outside), (centre, metres, sorted(got & outside))


def test_bbox_in_each_crs_selects_the_points_inside(server):
    box = (9.0, 59.0, 13.0, 62.0)
    inside = {i for i, (lon, lat) in enumerate(POINTS) if box[0] <= lon <= box[2] and box[1] <= lat <= box[3]}
    assert len(inside) > 3
    for dataset in ("wgs", "utm"):
        query = urllib.parse.urlencode({"bbox": ",".join(map(str, box)), "select": "id", "limit": N})
        got = {r["id"] for r in get_json(server, f"/api/v1/datasets/test/{dataset}/rows?{query}")["rows"]}
        assert got == inside, dataset
