"""OGC API - Features at /ogc, tested with real clients: GDAL's OAPIF driver (ogrinfo, ogr2ogr from
Debian's gdal-bin, and the newer GDAL inside pyogrio's wheel for Part 2's CRS open options), OWSLib,
and plain HTTP for the conformance classes the server claims. Every expected answer comes from the
REST API (`/api/v1/datasets/.../rows`) of the same demo server, transformed with PROJ (pyproj)
where a CRS is involved, so the two doors are checked against each other.

One demo server serves the whole module (`tverr serve --demo`; the module takes about 70 s with a
debug binary). TVERR_BIN picks the binary; TVERR_OGC_PERSONS the demo's population (default 32000,
which gives hamar/eiendommer more than 10,000 parcels, so the limit cap can be seen);
TVERR_OGC_SERVER + TVERR_OGC_DATA run the module against a demo server already running.
Needs Debian's gdal-bin (ogrinfo, ogr2ogr) and pip's OWSLib, pyogrio, geopandas, shapely, requests.
"""
import datetime
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import time
import urllib.parse

import pyogrio
import pytest
import requests
from owslib.ogcapi import REQUEST_HEADERS as OWSLIB_REQUEST_HEADERS
from owslib.ogcapi.features import Features
from pyproj import Transformer
from shapely import wkt as shapely_wkt
from shapely.geometry import Point, Polygon

from conftest import Tverr, tverr_bin

OPEN_GEO = {"hamar.barnehager", "hamar.helsetjenester", "hamar.fastleger", "hamar.gater",
            "hamar.reguleringsplaner", "hamar.kommunegrense"}
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG = "http://www.opengis.net/def/crs/EPSG/0/"
CRS_LIST = [CRS84, EPSG + "4326", EPSG + "25832", EPSG + "25833"]
OLA_PURPOSE = "byggesaksbehandling"
GEOJSON = "application/geo+json"
F1 = "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/"
CONFORMANCE = [F1 + "core", F1 + "geojson", F1 + "html", F1 + "oas30",
               "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
               "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
               "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
               "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
               "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
               "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
               "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
               "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
               "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions"]
# A key property per collection that is unique in the demo data, to compare features by.
KEY = {"hamar.barnehager": "navn", "hamar.helsetjenester": "navn", "hamar.fastleger": "lege",
       "hamar.gater": "gatenavn", "hamar.reguleringsplaner": "planid", "hamar.kommunegrense": "navn",
       "hamar.eiendommer": "matrikkel"}
TO_LONLAT = Transformer.from_crs("EPSG:25833", "EPSG:4326", always_xy=True)
TO_32 = Transformer.from_crs("EPSG:25833", "EPSG:25832", always_xy=True)
CMD_SECONDS = 600


# --------------------------------------------------------------------------- the server


class Server:
    def __init__(self, base: str, tverr: Tverr, tmp: pathlib.Path):
        self.base = base
        self.ogc = base + "/ogc"
        self.tverr = tverr
        self.tmp = tmp
        self.tokens: dict[str, str] = {}

    def token(self, user: str) -> str:
        if user not in self.tokens:
            self.tokens[user] = self.tverr.run("token", "create", "--user", user).strip()
        return self.tokens[user]

    def headers(self, user: str | None = None, purpose: str | None = None) -> dict:
        h = {}
        if user:
            h["Authorization"] = "Bearer " + self.token(user)
        if purpose:
            h["Tverr-Purpose"] = purpose
        return h

    def ola(self) -> dict:
        return self.headers("ola", OLA_PURPOSE)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    for tool in ("ogrinfo", "ogr2ogr"):
        assert shutil.which(tool), f"{tool} is missing: apt-get install gdal-bin"
    tmp = tmp_path_factory.mktemp("ogc")
    if os.environ.get("TVERR_OGC_SERVER"):
        # A demo server already running (TVERR_OGC_SERVER=http://127.0.0.1:PORT) with its data
        # directory in TVERR_OGC_DATA, for tokens. Note that the last test appends to hamar/gater.
        server = Server(os.environ["TVERR_OGC_SERVER"].rstrip("/"), Tverr(pathlib.Path(os.environ["TVERR_OGC_DATA"])), tmp)
        server.ogc = os.environ.get("TVERR_OGC_ENDPOINT", server.ogc)
        yield server
        return
    data = tmp / "data"
    tverr = Tverr(data)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    base = f"http://127.0.0.1:{port}"
    log = open(tmp / "serve.log", "wb")
    persons = os.environ.get("TVERR_OGC_PERSONS", "32000")
    proc = subprocess.Popen([tverr_bin(), "serve", "--demo", "--persons", persons, "--data", str(data),
                             "--listen", f"127.0.0.1:{port}"], env=tverr.env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 900
        while True:
            if proc.poll() is not None:
                pytest.fail(f"tverr serve --demo exited with {proc.returncode}: {(tmp / 'serve.log').read_text()}")
            try:
                if requests.get(base + "/health", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "the demo server did not answer /health in 900 s"
            time.sleep(0.25)
        yield Server(base, tverr, tmp)
    finally:
        proc.terminate()
        proc.wait()
        log.close()
        shutil.rmtree(data, ignore_errors=True)  # the demo's catalogue and lake: hundreds of MB


# --------------------------------------------------------------------------- helpers


def get(url: str, params=None, headers=None) -> requests.Response:
    return requests.get(url, params=params, headers=headers or {}, timeout=120)


def show(r: requests.Response) -> str:
    return f"{r.request.method} {r.url} -> {r.status_code} {r.headers.get('Content-Type')}: {r.text[:600]}"


def ok_json(r: requests.Response) -> dict:
    assert r.status_code == 200, show(r)
    return r.json()


def media(r: requests.Response) -> str:
    return r.headers.get("Content-Type", "").split(";")[0].strip().lower()


def link(doc: dict, rel: str, type_: str | None = None) -> dict | None:
    for l in doc.get("links", []):
        if l.get("rel") == rel and (type_ is None or l.get("type", "").split(";")[0] == type_):
            return l
    return None


def rest_rows(srv: Server, dataset: str, headers=None, params=None) -> list[dict]:
    """Every row of ORG/DATASET through the REST API, following `next`."""
    url = f"{srv.base}/api/v1/datasets/{dataset}/rows"
    q = {"limit": 10000, **(params or {})}
    rows = []
    while url:
        page = ok_json(get(url, q, headers))
        rows += page["rows"]
        nxt = page.get("next")
        url, q = (urllib.parse.urljoin(url, nxt), None) if nxt else (None, None)
    return rows


def rest_count(srv: Server, collection: str, headers=None) -> int:
    return len(rest_rows(srv, collection.replace(".", "/"), headers, {"select": KEY[collection]}))


def items(srv: Server, collection: str, params=None, headers=None) -> requests.Response:
    return get(f"{srv.ogc}/collections/{collection}/items", params, headers)


def all_items(srv: Server, collection: str, params=None, headers=None) -> tuple[list[dict], list[dict]]:
    """Every feature of an items query, following `next` links; returns (features, pages)."""
    r = items(srv, collection, {"limit": 10000, **(params or {})}, headers)
    pages = []
    while True:
        page = ok_json(r)
        pages.append(page)
        nxt = link(page, "next")
        if not nxt or not page["features"]:
            break
        assert len(pages) < 1000, "next links do not end"
        r = get(urllib.parse.urljoin(r.url, nxt["href"]), None, headers)
    return [f for p in pages for f in p["features"]], pages


def keys(features: list[dict], collection: str) -> list:
    return sorted(f["properties"][KEY[collection]] for f in features)


def utm_points(srv: Server) -> dict[str, tuple[float, float]]:
    """hamar/barnehager's points as stored (EPSG:25833), by name."""
    out = {}
    for r in rest_rows(srv, "hamar/barnehager"):
        p = shapely_wkt.loads(r["geometry"])
        out[r["navn"]] = (p.x, p.y)
    return out


def lonlat_points(srv: Server) -> dict[str, tuple[float, float]]:
    return {k: TO_LONLAT.transform(*xy) for k, xy in utm_points(srv).items()}


def split(values, q: float, min_gap: float) -> float:
    """A value between two neighbouring coordinates, near quantile q, at least min_gap/2 from each."""
    s = sorted(set(values))
    target = q * (len(s) - 1)
    gaps = [(abs(i - target), i) for i in range(len(s) - 1) if s[i + 1] - s[i] >= min_gap]
    assert gaps, "no gap wide enough in the demo's coordinates"
    i = min(gaps)[1]
    return (s[i] + s[i + 1]) / 2


def box_for(points: dict, min_gap: float) -> tuple[float, float, float, float]:
    """A box holding roughly the middle of the points, with no point near an edge."""
    xs = [p[0] for p in points.values()]
    ys = [p[1] for p in points.values()]
    return split(xs, 0.2, min_gap), split(ys, 0.2, min_gap), split(xs, 0.8, min_gap), split(ys, 0.8, min_gap)


def inside(points: dict, box) -> list:
    minx, miny, maxx, maxy = box
    return sorted(k for k, (x, y) in points.items() if minx < x < maxx and miny < y < maxy)


def triangle_for(points: dict, box, margin: float) -> Polygon:
    """A triangle from three of the box's corners with no point within `margin` of its edges."""
    minx, miny, maxx, maxy = box
    corners = [(minx, miny), (maxx, miny), (maxx, maxy), (minx, maxy)]
    for skip in range(4):
        tri = Polygon([c for i, c in enumerate(corners) if i != skip])
        near = min(tri.exterior.distance(Point(p)) for p in points.values())
        n = sum(tri.contains(Point(p)) for p in points.values())
        if near >= margin and 0 < n < len(points):
            return tri
    pytest.fail("no triangle keeps its edges away from the demo's kindergartens")


def wkt_polygon(poly: Polygon) -> str:
    return "POLYGON((" + ",".join(f"{x!r} {y!r}" for x, y in poly.exterior.coords) + "))"


def run(cmd: list[str], env: dict | None = None, ok: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, env=env, capture_output=True, timeout=CMD_SECONDS)
    if ok:
        assert out.returncode == 0, f"{cmd} failed ({out.returncode}): {out.stderr.decode(errors='replace')[-2000:]}"
    return out


def gdal_env(headers: dict | None = None) -> dict:
    env = dict(os.environ, GDAL_HTTP_TIMEOUT="300", CPL_DEBUG="OFF")
    env.pop("GDAL_HTTP_HEADERS", None)
    if headers:
        # GDAL >= 3.6: "Name: value" lines separated by CRLF.
        env["GDAL_HTTP_HEADERS"] = "\r\n".join(f"{k}: {v}" for k, v in headers.items())
    return env


def ogr_layers(srv: Server, headers=None) -> set[str]:
    out = run(["ogrinfo", "-ro", "-so", f"OAPIF:{srv.ogc}"], gdal_env(headers)).stdout.decode()
    return {m.group(1) for m in re.finditer(r"^\d+: (\S+)", out, re.M)}


def ogr_feature_count(srv: Server, layer: str, headers=None, extra: list[str] = ()) -> int:
    out = run(["ogrinfo", "-ro", "-so", *extra, f"OAPIF:{srv.ogc}", layer], gdal_env(headers)).stdout.decode()
    m = re.search(r"^Feature Count: (-?\d+)", out, re.M)
    assert m, out
    return int(m.group(1))


def ogr_features(srv: Server, layer: str, extra: list[str] = (), headers=None) -> list[str]:
    """The key property of every feature ogrinfo reads (it pages through the items itself)."""
    out = run(["ogrinfo", "-ro", "-al", "-geom=NO", *extra, f"OAPIF:{srv.ogc}", layer], gdal_env(headers))
    text = out.stdout.decode()
    n = len(re.findall(r"^OGRFeature\(", text, re.M))
    found = re.findall(rf"^\s+{KEY[layer]} \(\w+\) = (.*)$", text, re.M)
    assert len(found) == n, f"{n} features but {len(found)} {KEY[layer]} values"
    return sorted(found)


def ogr2ogr_geojson(srv: Server, tmp: pathlib.Path, layer: str, extra: list[str] = (), headers=None) -> dict:
    """ogr2ogr's copy of a layer as GeoJSON, in the layer's CRS."""
    out = tmp / f"{layer}-{time.monotonic_ns()}.geojson"
    run(["ogr2ogr", "-f", "GeoJSON", str(out), *extra, f"OAPIF:{srv.ogc}", layer], gdal_env(headers))
    return json.loads(out.read_text())


def expected_collections(srv: Server, headers: dict) -> set[str]:
    """Collections the caller should see: datasets the REST API lets them read, with a geometry
    column among the columns they see."""
    out = set()
    for d in ok_json(get(srv.base + "/api/v1/datasets", None, headers))["datasets"]:
        name = f"{d['org']}/{d['slug']}"
        if get(f"{srv.base}/api/v1/datasets/{name}/rows", {"limit": 1}, headers).status_code != 200:
            continue
        meta = ok_json(get(f"{srv.base}/api/v1/datasets/{name}", None, headers))
        if any(c.get("column_type") == "geometry" for c in meta["columns"]):
            out.add(f"{d['org']}.{d['slug']}")
    return out


@pytest.fixture
def owslib_headers():
    """OWSLib's API() merges `headers=` into its module-wide REQUEST_HEADERS dict, so a token given
    to one client would leak into every later one: put it back after each test."""
    saved = dict(OWSLIB_REQUEST_HEADERS)
    yield
    OWSLIB_REQUEST_HEADERS.clear()
    OWSLIB_REQUEST_HEADERS.update(saved)


@pytest.fixture
def gdal_header_file(srv, tmp_path):
    """pyogrio's bundled GDAL (3.12) takes the headers from GDAL_HTTP_HEADER_FILE: its OAPIF driver
    sends its own Accept header, which replaces GDAL_HTTP_HEADERS there."""
    def use(headers: dict | None):
        if headers:
            path = tmp_path / "gdal-headers.txt"
            path.write_text("".join(f"{k}: {v}\n" for k, v in headers.items()))
            pyogrio.set_gdal_config_options({"GDAL_HTTP_HEADER_FILE": str(path)})
        else:
            pyogrio.set_gdal_config_options({"GDAL_HTTP_HEADER_FILE": None})
    yield use
    pyogrio.set_gdal_config_options({"GDAL_HTTP_HEADER_FILE": None})


# --------------------------------------------------------------------------- a, b: GDAL lists the collections


def test_ogrinfo_anonymous_lists_exactly_the_open_geo_collections(srv):
    layers = ogr_layers(srv)
    assert layers == OPEN_GEO, f"extra: {sorted(layers - OPEN_GEO)}, missing: {sorted(OPEN_GEO - layers)}"
    assert "hamar.eiendommer" not in layers
    assert expected_collections(srv, {}) == OPEN_GEO


def test_ogrinfo_with_token_and_purpose_sees_eiendommer(srv):
    layers = ogr_layers(srv, srv.ola())
    assert "hamar.eiendommer" in layers
    assert layers == expected_collections(srv, srv.ola())
    assert OPEN_GEO <= layers


def test_gdal_http_headers_comma_separated_also_reach_the_server(srv):
    # GDAL_HTTP_HEADERS also takes a comma-separated list (no value here holds a comma).
    env = gdal_env()
    env["GDAL_HTTP_HEADERS"] = f"Authorization: Bearer {srv.token('ola')},Tverr-Purpose: {OLA_PURPOSE}"
    out = run(["ogrinfo", "-ro", "-so", f"OAPIF:{srv.ogc}"], env).stdout.decode()
    assert re.search(r"^\d+: hamar\.eiendommer\b", out, re.M), out


def test_without_purpose_eiendommer_cannot_be_read(srv):
    token_only = srv.headers("ola")
    layers = ogr_layers(srv, token_only)
    if "hamar.eiendommer" in layers:
        out = run(["ogrinfo", "-ro", "-al", "-geom=NO", f"OAPIF:{srv.ogc}", "hamar.eiendommer"], gdal_env(token_only),
                  ok=False)
        assert "OGRFeature(" not in out.stdout.decode(), "ola read hamar.eiendommer with no purpose through GDAL"
    r = items(srv, "hamar.eiendommer", {"limit": 5}, token_only)
    assert r.status_code in (403, 404), show(r)
    assert "features" not in r.text
    # The purpose as a query parameter works as the header does.
    r = items(srv, "hamar.eiendommer", {"limit": 5, "purpose": OLA_PURPOSE}, token_only)
    assert len(ok_json(r)["features"]) == 5, show(r)


# --------------------------------------------------------------------------- c: counts


@pytest.mark.parametrize("collection", sorted(OPEN_GEO))
def test_ogr_counts_equal_the_rest_api(srv, collection):
    expected = rest_count(srv, collection)
    assert expected > 0
    assert ogr_feature_count(srv, collection) == expected
    got = ogr_features(srv, collection)
    assert len(got) == expected
    assert got == sorted(str(r[KEY[collection]]) for r in rest_rows(srv, collection.replace(".", "/")))


def test_ogr_counts_eiendommer_for_ola(srv):
    expected = rest_count(srv, "hamar.eiendommer", srv.ola())
    # Without an `extent` in the collection, `ogrinfo -so` reads every feature for the layer's
    # extent, 10 a page with GDAL 3.6: see test_collections_have_an_extent.
    assert ogr_feature_count(srv, "hamar.eiendommer", srv.ola(), ["-oo", "PAGE_SIZE=10000"]) == expected
    # GDAL 3.6 pages 10 at a time unless told: 1,500 requests for ola's 15,000 parcels.
    assert len(ogr_features(srv, "hamar.eiendommer", ["-oo", "PAGE_SIZE=1000"], srv.ola())) == expected


# --------------------------------------------------------------------------- d: ogr2ogr to GeoPackage


def test_ogr2ogr_copies_barnehager_to_geopackage(srv, tmp_path):
    out = tmp_path / "barnehager.gpkg"
    run(["ogr2ogr", "-f", "GPKG", str(out), f"OAPIF:{srv.ogc}", "hamar.barnehager"], gdal_env())
    info = pyogrio.read_info(out)
    assert info["features"] == rest_count(srv, "hamar.barnehager")
    gdf = pyogrio.read_dataframe(out)
    want = lonlat_points(srv)
    assert sorted(gdf["navn"]) == sorted(want)
    # GDAL 3.6 reads the default CRS84 (lon, lat); newer GDAL the storage CRS.
    epsg = gdf.crs.to_epsg() if gdf.crs else None
    expect = want if epsg in (4326, None) else utm_points(srv)
    tol = 1e-7 if epsg in (4326, None) else 1e-3
    for navn, geom in zip(gdf["navn"], gdf.geometry):
        x, y = expect[navn]
        assert abs(geom.x - x) < tol and abs(geom.y - y) < tol, (navn, geom.wkt, x, y)


def test_ogr2ogr_copies_eiendommer_with_token_and_purpose(srv, tmp_path):
    out = tmp_path / "eiendommer.gpkg"
    run(["ogr2ogr", "-f", "GPKG", "-oo", "PAGE_SIZE=5000", str(out), f"OAPIF:{srv.ogc}", "hamar.eiendommer"],
        gdal_env(srv.ola()))
    info = pyogrio.read_info(out)
    assert info["features"] == rest_count(srv, "hamar.eiendommer", srv.ola())
    assert "eier_fnr" not in list(info["fields"]), "ola's grant does not release the owners' person numbers"


# --------------------------------------------------------------------------- e: bbox


def test_bbox_in_lon_lat(srv, tmp_path):
    pts = lonlat_points(srv)
    box = box_for(pts, 0.0008)
    want = inside(pts, box)
    assert 0 < len(want) < len(pts)
    spat = [f"{v!r}" for v in box]
    if ogr_version() < (3, 7):  # the layer is in CRS84 until GDAL reads Part 2's storageCrs
        assert ogr_features(srv, "hamar.barnehager", ["-spat", *spat]) == want
    for srs in ("OGC:CRS84", "EPSG:4326"):  # ogr2ogr takes -spat_srs in x, y order
        got = ogr2ogr_geojson(srv, tmp_path, "hamar.barnehager", ["-spat", *spat, "-spat_srs", srs])
        assert keys(got["features"], "hamar.barnehager") == want, srs
    bbox = ",".join(spat)
    features, _ = all_items(srv, "hamar.barnehager", {"bbox": bbox})
    assert keys(features, "hamar.barnehager") == want
    features, _ = all_items(srv, "hamar.barnehager", {"bbox": bbox, "bbox-crs": CRS84})
    assert keys(features, "hamar.barnehager") == want
    # EPSG:4326 is latitude first: minLat,minLon,maxLat,maxLon.
    latlon = ",".join(repr(v) for v in (box[1], box[0], box[3], box[2]))
    features, _ = all_items(srv, "hamar.barnehager", {"bbox": latlon, "bbox-crs": EPSG + "4326"})
    assert keys(features, "hamar.barnehager") == want
    rest = rest_rows(srv, "hamar/barnehager", None, {"bbox": bbox})
    assert sorted(r["navn"] for r in rest) == want


def test_bbox_in_utm(srv, tmp_path):
    pts = utm_points(srv)
    box = box_for(pts, 60.0)
    want = inside(pts, box)
    assert 0 < len(want) < len(pts)
    spat = [f"{v!r}" for v in box]
    got = ogr2ogr_geojson(srv, tmp_path, "hamar.barnehager", ["-spat", *spat, "-spat_srs", "EPSG:25833"])
    assert keys(got["features"], "hamar.barnehager") == want
    bbox = ",".join(spat)
    features, _ = all_items(srv, "hamar.barnehager", {"bbox": bbox, "bbox-crs": EPSG + "25833"})
    assert keys(features, "hamar.barnehager") == want
    rest = rest_rows(srv, "hamar/barnehager", None, {"bbox": bbox, "bbox-crs": "EPSG:25833"})
    assert sorted(r["navn"] for r in rest) == want


def test_bbox_with_wrong_number_of_values_is_400(srv):
    for bad in ("11.0,60.7,11.2", "11.0,60.7,11.2,60.9,1", "a,b,c,d"):
        r = items(srv, "hamar.barnehager", {"bbox": bad})
        assert r.status_code == 400, show(r)


# --------------------------------------------------------------------------- f: CRS (Part 2)


def ogr_version() -> tuple[int, int]:
    out = run(["ogrinfo", "--version"]).stdout.decode()
    m = re.search(r"GDAL (\d+)\.(\d+)", out)
    return int(m.group(1)), int(m.group(2))


def test_debian_gdal_crs_open_option_if_supported(srv, tmp_path):
    """GDAL >= 3.7 has the OAPIF open option CRS; Debian 12's 3.6 does not (pyogrio's GDAL is
    used for it below)."""
    if ogr_version() < (3, 7):
        pytest.skip("ogr2ogr is GDAL < 3.7: no OAPIF CRS open option; tested with pyogrio's GDAL")
    want = utm_points(srv)
    doc = ogr2ogr_geojson(srv, tmp_path, "hamar.barnehager", ["-oo", "CRS=EPSG:25833"])
    assert len(doc["features"]) == len(want)
    for f in doc["features"]:
        x, y = f["geometry"]["coordinates"][:2]
        navn = f["properties"]["navn"]
        assert abs(x - want[navn][0]) < 1e-3 and abs(y - want[navn][1]) < 1e-3, (navn, x, y)


def read_oapif(srv: Server, layer: str, **kwargs):
    return pyogrio.read_dataframe(f"OAPIF:{srv.ogc}", layer=layer, **kwargs)


def test_pyogrio_gdal_crs_open_options(srv, gdal_header_file):
    assert pyogrio.__gdal_version__ >= (3, 7, 0), pyogrio.__gdal_version_string__
    utm = utm_points(srv)
    lonlat = lonlat_points(srv)
    # Default: the layer is in the storage CRS (storageCrs), EPSG:25833.
    gdf = read_oapif(srv, "hamar.barnehager")
    assert gdf.crs.to_epsg() == 25833
    assert len(gdf) == len(utm)
    for navn, g in zip(gdf["navn"], gdf.geometry):
        assert abs(g.x - utm[navn][0]) < 1e-3 and abs(g.y - utm[navn][1]) < 1e-3, (navn, g.wkt)
    # EPSG:4326: GDAL 3.12 asks the server for CRS84 (the same CRS in GIS axis order) and
    # reports OGC:CRS84; the server's latitude-first EPSG:4326 is tested over plain HTTP.
    gdf = read_oapif(srv, "hamar.barnehager", CRS="EPSG:4326")
    assert gdf.crs.to_epsg() == 4326 or gdf.crs.to_string() == "OGC:CRS84", gdf.crs.to_string()
    for navn, g in zip(gdf["navn"], gdf.geometry):
        assert abs(g.x - lonlat[navn][0]) < 1e-7 and abs(g.y - lonlat[navn][1]) < 1e-7, (navn, g.wkt, lonlat[navn])
    gdf = read_oapif(srv, "hamar.barnehager", CRS="OGC:CRS84")
    for navn, g in zip(gdf["navn"], gdf.geometry):
        assert abs(g.x - lonlat[navn][0]) < 1e-7 and abs(g.y - lonlat[navn][1]) < 1e-7, (navn, g.wkt)
    gdf = read_oapif(srv, "hamar.barnehager", CRS="EPSG:25832")
    assert gdf.crs.to_epsg() == 25832
    for navn, g in zip(gdf["navn"], gdf.geometry):
        x, y = TO_32.transform(*utm[navn])
        assert abs(g.x - x) < 1e-2 and abs(g.y - y) < 1e-2, (navn, g.wkt, x, y)
    # A bbox in the layer's CRS (EPSG:25833): GDAL sends bbox-crs.
    box = box_for(utm, 60.0)
    gdf = read_oapif(srv, "hamar.barnehager", bbox=box)
    assert sorted(gdf["navn"]) == inside(utm, box)


def test_pyogrio_gdal_reads_eiendommer_with_headers(srv, gdal_header_file):
    gdal_header_file(srv.ola())
    info = pyogrio.read_info(f"OAPIF:{srv.ogc}", layer="hamar.eiendommer")
    assert info["crs"] in ("EPSG:25833",), info["crs"]
    gdf = read_oapif(srv, "hamar.eiendommer", max_features=50)
    assert len(gdf) == 50
    gdal_header_file(None)
    with pytest.raises((pyogrio.errors.DataLayerError, pyogrio.errors.DataSourceError)):
        pyogrio.read_info(f"OAPIF:{srv.ogc}", layer="hamar.eiendommer")


def test_http_crs_and_axis_order(srv):
    utm = utm_points(srv)
    lonlat = lonlat_points(srv)

    def coords(params):
        r = items(srv, "hamar.barnehager", {"limit": 100, **params})
        doc = ok_json(r)
        return r.headers.get("Content-Crs"), {f["properties"]["navn"]: f["geometry"]["coordinates"] for f in doc["features"]}

    crs, got = coords({})
    assert crs == f"<{CRS84}>"
    for navn, (x, y) in got.items():
        assert abs(x - lonlat[navn][0]) < 1e-7 and abs(y - lonlat[navn][1]) < 1e-7, (navn, x, y)
    crs, got = coords({"crs": CRS84})
    assert crs == f"<{CRS84}>"
    for navn, (x, y) in got.items():
        assert abs(x - lonlat[navn][0]) < 1e-7 and abs(y - lonlat[navn][1]) < 1e-7, (navn, x, y)
    crs, got = coords({"crs": EPSG + "4326"})
    assert crs == f"<{EPSG}4326>"
    for navn, (lat, lon) in got.items():
        assert abs(lat - lonlat[navn][1]) < 1e-7 and abs(lon - lonlat[navn][0]) < 1e-7, ("EPSG:4326 is lat,lon", navn, lat, lon)
    crs, got = coords({"crs": EPSG + "25833"})
    assert crs == f"<{EPSG}25833>"
    for navn, (x, y) in got.items():
        assert abs(x - utm[navn][0]) < 1e-3 and abs(y - utm[navn][1]) < 1e-3, (navn, x, y)
    crs, got = coords({"crs": EPSG + "25832"})
    assert crs == f"<{EPSG}25832>"
    for navn, (x, y) in got.items():
        ex, ey = TO_32.transform(*utm[navn])
        assert abs(x - ex) < 1e-2 and abs(y - ey) < 1e-2, (navn, x, y, ex, ey)
    # One feature, in a CRS.
    feature = ok_json(items(srv, "hamar.barnehager", {"limit": 1}))["features"][0]
    r = get(f"{srv.ogc}/collections/hamar.barnehager/items/{feature['id']}", {"crs": EPSG + "4326"})
    lat, lon = ok_json(r)["geometry"]["coordinates"]
    assert r.headers.get("Content-Crs") == f"<{EPSG}4326>"
    navn = feature["properties"]["navn"]
    assert abs(lat - lonlat[navn][1]) < 1e-7 and abs(lon - lonlat[navn][0]) < 1e-7


def test_unsupported_crs_is_400(srv):
    for bad in (EPSG + "3857", EPSG + "99999", "nonsense"):
        r = items(srv, "hamar.barnehager", {"crs": bad})
        assert r.status_code == 400, show(r)
        r = items(srv, "hamar.barnehager", {"bbox": "11.0,60.7,11.2,60.9", "bbox-crs": bad})
        assert r.status_code == 400, show(r)


# --------------------------------------------------------------------------- g: OWSLib


def test_owslib_anonymous(srv, owslib_headers):
    w = Features(srv.ogc)
    assert set(w.feature_collections()) == OPEN_GEO
    conf = w.conformance()
    assert set(CONFORMANCE) <= set(conf["conformsTo"])
    api = w.api()
    assert str(api.get("openapi", "")).startswith("3.0"), api.get("openapi")
    c = w.collection("hamar.barnehager")
    assert c["id"] == "hamar.barnehager" and c["itemType"] == "feature"
    page = w.collection_items("hamar.barnehager", limit=5)
    assert page["type"] == "FeatureCollection"
    assert len(page["features"]) == 5 and page["numberReturned"] == 5
    assert page["numberMatched"] == rest_count(srv, "hamar.barnehager")
    q = w.collection_queryables("hamar.barnehager")
    assert {"kapasitet", "navn", "bydel"} <= set(q["properties"])
    one = w.collection_item("hamar.barnehager", page["features"][0]["id"])
    assert one["id"] == page["features"][0]["id"]
    filtered = w.collection_items("hamar.barnehager", limit=100, filter="kapasitet > 50")
    assert all(f["properties"]["kapasitet"] > 50 for f in filtered["features"])
    with pytest.raises(RuntimeError):
        w.collection("hamar.eiendommer")


def test_owslib_with_token_and_purpose(srv, owslib_headers):
    w = Features(srv.ogc, headers=srv.ola())
    assert "hamar.eiendommer" in w.feature_collections()
    c = w.collection("hamar.eiendommer")
    assert c["id"] == "hamar.eiendommer"
    page = w.collection_items("hamar.eiendommer", limit=3)
    assert len(page["features"]) == 3
    assert page["numberMatched"] == rest_count(srv, "hamar.eiendommer", srv.ola())
    q = w.collection_queryables("hamar.eiendommer")
    assert "matrikkel" in q["properties"] and "eier_fnr" not in q["properties"]
    # The same token without the purpose reads nothing.
    OWSLIB_REQUEST_HEADERS.pop("Tverr-Purpose", None)
    w = Features(srv.ogc, headers=srv.headers("ola"))
    w.headers.pop("Tverr-Purpose", None)
    with pytest.raises(RuntimeError):
        w.collection_items("hamar.eiendommer", limit=3)


# --------------------------------------------------------------------------- h: the spec over plain HTTP


def test_landing_page(srv):
    r = get(srv.ogc)
    doc = ok_json(r)
    assert media(r) == "application/json", show(r)
    for rel in ("self", "service-desc", "service-doc", "conformance", "data"):
        assert link(doc, rel), f"no {rel} link: {doc.get('links')}"
    desc = link(doc, "service-desc")
    assert desc["type"] == "application/vnd.oai.openapi+json;version=3.0"
    assert urllib.parse.urlparse(urllib.parse.urljoin(r.url, desc["href"])).path == "/ogc/api"
    assert urllib.parse.urlparse(urllib.parse.urljoin(r.url, link(doc, "data")["href"])).path == "/ogc/collections"
    assert urllib.parse.urlparse(urllib.parse.urljoin(r.url, link(doc, "conformance")["href"])).path == "/ogc/conformance"
    for l in doc["links"]:
        target = get(urllib.parse.urljoin(r.url, l["href"]))
        assert target.status_code == 200, (l, show(target))
    for html in (get(srv.ogc, {"f": "html"}), get(srv.ogc, None, {"Accept": "text/html"})):
        assert html.status_code == 200 and media(html) == "text/html", show(html)
        assert "<html" in html.text.lower()


def test_openapi_document_is_valid_openapi_30(srv):
    from openapi_spec_validator import validate
    r = get(srv.ogc + "/api")
    doc = ok_json(r)
    assert media(r) in ("application/vnd.oai.openapi+json", "application/json"), show(r)
    assert doc["openapi"].startswith("3.0"), doc["openapi"]
    validate(doc)
    paths = " ".join(doc["paths"])
    assert "/collections" in paths and "/conformance" in paths and "/items" in paths, sorted(doc["paths"])


def test_conformance(srv):
    doc = ok_json(get(srv.ogc + "/conformance"))
    missing = [c for c in CONFORMANCE if c not in doc["conformsTo"]]
    assert not missing, missing


def test_collections(srv):
    r = get(srv.ogc + "/collections")
    doc = ok_json(r)
    assert link(doc, "self")
    by_id = {c["id"]: c for c in doc["collections"]}
    assert set(by_id) == OPEN_GEO
    for cid, c in by_id.items():
        assert c["title"], c
        assert "description" in c, c
        assert c["itemType"] == "feature"
        assert c["crs"][:1] == [CRS84] or CRS84 in c["crs"], c["crs"]
        assert set(CRS_LIST) <= set(c["crs"]), c["crs"]
        assert c["storageCrs"] == EPSG + "25833"
        assert link(c, "self"), c["links"]
        it = link(c, "items", GEOJSON)
        assert it, c["links"]
        assert urllib.parse.urlparse(urllib.parse.urljoin(r.url, it["href"])).path == f"/ogc/collections/{cid}/items"
        one = ok_json(get(f"{srv.ogc}/collections/{cid}"))
        for k in ("id", "title", "itemType", "crs", "storageCrs"):
            assert one[k] == c[k], (cid, k)
    with_ola = {c["id"] for c in ok_json(get(srv.ogc + "/collections", None, srv.ola()))["collections"]}
    assert with_ola == expected_collections(srv, srv.ola())


def test_collections_have_an_extent(srv):
    """OGC API Features Core recommends `extent` in a collection (/rec/core/fc-md-extent); GDAL
    takes the layer extent from it, and without it `ogrinfo -so` (as QGIS's layer properties)
    downloads every feature to compute one."""
    lonlat = lonlat_points(srv)
    c = ok_json(get(f"{srv.ogc}/collections/hamar.barnehager"))
    assert "extent" in c, "no extent in the collection"
    minx, miny, maxx, maxy = c["extent"]["spatial"]["bbox"][0][:4]
    xs = [p[0] for p in lonlat.values()]
    ys = [p[1] for p in lonlat.values()]
    assert minx <= min(xs) and miny <= min(ys) and maxx >= max(xs) and maxy >= max(ys)
    assert c["extent"]["spatial"].get("crs", CRS84) == CRS84


def test_hidden_collection_is_the_same_404_as_a_missing_one(srv):
    def body(r, name):
        return r.text.replace(name, "NAME")

    for path in ("", "/items", "/queryables", "/items/1"):
        missing = get(f"{srv.ogc}/collections/hamar.finnesikke{path}")
        assert missing.status_code == 404, show(missing)
        for hidden, headers in (("hamar.eiendommer", None), ("hamar.innbyggere", None),
                                ("hamar.hjemmetjenester", srv.ola()), ("hamar.eiendommer", srv.headers("kari"))):
            r = get(f"{srv.ogc}/collections/{hidden}{path}", None, headers)
            assert r.status_code == 404, show(r)
            assert body(r, hidden) == body(missing, "hamar.finnesikke"), (show(r), show(missing))


def test_items_response(srv):
    total = rest_count(srv, "hamar.barnehager")
    r = items(srv, "hamar.barnehager")
    doc = ok_json(r)
    assert media(r) == GEOJSON, show(r)
    assert doc["type"] == "FeatureCollection"
    assert len(doc["features"]) == 10 == doc["numberReturned"], "default limit is 10"
    assert doc["numberMatched"] == total
    ts = datetime.datetime.fromisoformat(doc["timeStamp"].replace("Z", "+00:00"))
    assert ts.tzinfo is not None
    assert abs((datetime.datetime.now(datetime.timezone.utc) - ts).total_seconds()) < 300
    assert link(doc, "self", GEOJSON) or link(doc, "self")
    assert link(doc, "alternate", "text/html"), doc["links"]
    assert link(doc, "next"), "a full page has a next link"
    assert not link(doc, "prev"), "the first page has no prev link"
    assert r.headers.get("Content-Crs") == f"<{CRS84}>"
    for f in doc["features"]:
        assert f["type"] == "Feature"
        assert isinstance(f["id"], str) and f["id"]
        assert f["geometry"]["type"] == "Point"
        assert set(f["properties"]) >= {"navn", "kapasitet", "bydel"}
    html = items(srv, "hamar.barnehager", {"f": "html"})
    assert html.status_code == 200 and media(html) == "text/html", show(html)
    js = items(srv, "hamar.barnehager", {"f": "json"})
    assert js.status_code == 200 and media(js) == GEOJSON, show(js)
    alt = get(urllib.parse.urljoin(r.url, link(doc, "alternate", "text/html")["href"]))
    assert alt.status_code == 200 and media(alt) == "text/html", show(alt)


def test_limit(srv):
    for bad in ("0", "-1", "abc", "1.5", ""):
        r = items(srv, "hamar.barnehager", {"limit": bad})
        assert r.status_code == 400, show(r)
    doc = ok_json(items(srv, "hamar.barnehager", {"limit": 10001}))
    assert doc["numberReturned"] == rest_count(srv, "hamar.barnehager")
    total = rest_count(srv, "hamar.eiendommer", srv.ola())
    doc = ok_json(items(srv, "hamar.eiendommer", {"limit": 20000}, srv.ola()))
    assert doc["numberReturned"] == min(total, 10000) == len(doc["features"])
    if total > 10000:
        assert link(doc, "next")


def test_unknown_parameters_are_400(srv):
    for params in ({"foo": "bar"}, {"offset": "10"}, {"where": "kapasitet > 1"}, {"kapasitet": "32"},
                   {"select": "navn"}):
        r = items(srv, "hamar.barnehager", params)
        assert r.status_code == 400, show(r)


def test_paging_returns_every_feature_once(srv):
    total = rest_count(srv, "hamar.barnehager")
    r = items(srv, "hamar.barnehager", {"limit": 7})
    seen, pages = [], 0
    while True:
        doc = ok_json(r)
        pages += 1
        assert doc["numberMatched"] == total
        assert doc["numberReturned"] == len(doc["features"])
        seen += [f["id"] for f in doc["features"]]
        if pages > 1:
            assert link(doc, "prev"), f"page {pages} has no prev link"
            prev = ok_json(get(urllib.parse.urljoin(r.url, link(doc, "prev")["href"])))
            assert len(prev["features"]) == 7
        nxt = link(doc, "next")
        if len(doc["features"]) == 7:
            assert nxt, f"full page {pages} has no next link"
        if not nxt:
            break
        assert pages < 50
        r = get(urllib.parse.urljoin(r.url, nxt["href"]))
    assert len(seen) == len(set(seen)) == total


def test_feature_ids_are_stable_and_fetchable(srv):
    first, _ = all_items(srv, "hamar.barnehager")
    again, _ = all_items(srv, "hamar.barnehager", {"limit": 5})
    assert {f["id"]: f["properties"] for f in first} == {f["id"]: f["properties"] for f in again}
    for f in first[:5]:
        r = get(f"{srv.ogc}/collections/hamar.barnehager/items/{urllib.parse.quote(f['id'], safe='')}")
        one = ok_json(r)
        assert media(r) == GEOJSON, show(r)
        assert one["type"] == "Feature" and one["id"] == f["id"]
        assert one["properties"] == f["properties"]
        assert one["geometry"]["type"] == f["geometry"]["type"]
        a, b = one["geometry"]["coordinates"], f["geometry"]["coordinates"]
        assert abs(a[0] - b[0]) < 1e-9 and abs(a[1] - b[1]) < 1e-9, (a, b)
    for bad in ("finnesikke", "999999999"):
        r = get(f"{srv.ogc}/collections/hamar.barnehager/items/{bad}")
        assert r.status_code == 404, show(r)


def test_queryables(srv):
    r = get(f"{srv.ogc}/collections/hamar.barnehager/queryables")
    doc = ok_json(r)
    assert media(r) == "application/schema+json", show(r)
    assert doc["type"] == "object"
    cols = {c["name"] for c in ok_json(get(f"{srv.base}/api/v1/datasets/hamar/barnehager"))["columns"]}
    assert set(doc["properties"]) == cols
    g = doc["properties"]["geometry"]
    assert g.get("format", "").startswith("geometry-") or "$ref" in g, g
    assert doc["properties"]["kapasitet"].get("type") in ("integer", "number")
    assert doc["properties"]["navn"].get("type") == "string"
    ola = ok_json(get(f"{srv.ogc}/collections/hamar.eiendommer/queryables", None, srv.ola()))
    ola_cols = {c["name"] for c in ok_json(get(f"{srv.base}/api/v1/datasets/hamar/eiendommer", None, srv.ola()))["columns"]}
    assert set(ola["properties"]) == ola_cols
    assert "eier_fnr" not in ola["properties"]
    per = ok_json(get(f"{srv.ogc}/collections/hamar.eiendommer/queryables", None, srv.headers("per", "eiendomsskatt")))
    assert "eier_fnr" in per["properties"]


# --------------------------------------------------------------------------- datetime


def test_datetime(srv):
    rows = rest_rows(srv, "hamar/reguleringsplaner")
    dated = {r["planid"]: r["vedtaksdato"] for r in rows if r["vedtaksdato"]}
    assert len(dated) >= 3
    one_day = sorted(dated.values())[len(dated) // 2]
    cases = {
        one_day: [k for k, d in dated.items() if d == one_day],
        "2010-01-01/2016-12-31": [k for k, d in dated.items() if "2010-01-01" <= d <= "2016-12-31"],
        "../2006-01-01": [k for k, d in dated.items() if d <= "2006-01-01"],
        "2015-01-01/..": [k for k, d in dated.items() if d >= "2015-01-01"],
        "2010-01-01T00:00:00Z/2016-12-31T23:59:59Z": [k for k, d in dated.items() if "2010-01-01" <= d <= "2016-12-31"],
    }
    for dt, want in cases.items():
        features, pages = all_items(srv, "hamar.reguleringsplaner", {"datetime": dt})
        assert keys(features, "hamar.reguleringsplaner") == sorted(want), dt
        assert pages[0]["numberMatched"] == len(want), dt
    for bad in ("yesterday", "2020-13-01", "2020-01-01/2021-01-01/2022-01-01"):
        r = items(srv, "hamar.reguleringsplaner", {"datetime": bad})
        assert r.status_code == 400, show(r)
    r = items(srv, "hamar.barnehager", {"datetime": "2020-01-01"})
    assert r.status_code == 400, show(r)


# --------------------------------------------------------------------------- CQL2 filters


def filtered(srv, collection, filter_, headers=None, **params):
    features, pages = all_items(srv, collection, {"filter": filter_, **params}, headers)
    assert pages[0]["numberMatched"] == len(features), filter_
    return keys(features, collection)


def test_cql2_text_comparisons(srv):
    rows = rest_rows(srv, "hamar/barnehager")
    names = lambda pred: sorted(r["navn"] for r in rows if pred(r))  # noqa: E731
    bydeler = sorted({r["bydel"] for r in rows}, key=lambda b: -sum(r["bydel"] == b for r in rows))
    two = bydeler[:2]
    cases = {
        "kapasitet > 50": names(lambda r: r["kapasitet"] > 50),
        "kapasitet>50": names(lambda r: r["kapasitet"] > 50),
        "kapasitet <= 50": names(lambda r: r["kapasitet"] <= 50),
        "kapasitet <> 72": names(lambda r: r["kapasitet"] != 72),
        "navn LIKE 'A%'": names(lambda r: r["navn"].startswith("A")),
        "navn LIKE 'S%'": names(lambda r: r["navn"].startswith("S")),
        "navn LIKE '%barnehage 2'": names(lambda r: r["navn"].endswith("barnehage 2")),
        f"bydel IN ('{two[0]}','{two[1]}')": names(lambda r: r["bydel"] in two),
        f"bydel NOT IN ('{two[0]}')": names(lambda r: r["bydel"] != two[0]),
        "kapasitet BETWEEN 10 AND 60": names(lambda r: 10 <= r["kapasitet"] <= 60),
        f"kapasitet > 50 AND bydel = '{two[0]}'": names(lambda r: r["kapasitet"] > 50 and r["bydel"] == two[0]),
        f"kapasitet > 100 OR bydel = '{two[1]}'": names(lambda r: r["kapasitet"] > 100 or r["bydel"] == two[1]),
        "NOT (kapasitet > 50)": names(lambda r: not r["kapasitet"] > 50),
        "ledige_plasser IS NULL": names(lambda r: r["ledige_plasser"] is None),
    }
    for f, want in cases.items():
        got = filtered(srv, "hamar.barnehager", f)
        assert got == want, f
    assert cases["navn LIKE 'A%'"], "the demo has a kindergarten whose name starts with A"


def test_cql2_json(srv):
    rows = rest_rows(srv, "hamar/barnehager")
    want = sorted(r["navn"] for r in rows if r["kapasitet"] > 50)
    f = json.dumps({"op": ">", "args": [{"property": "kapasitet"}, 50]})
    assert filtered(srv, "hamar.barnehager", f, **{"filter-lang": "cql2-json"}) == want
    f = json.dumps({"op": "and", "args": [{"op": ">", "args": [{"property": "kapasitet"}, 50]},
                                          {"op": "like", "args": [{"property": "navn"}, "S%"]}]})
    assert filtered(srv, "hamar.barnehager", f, **{"filter-lang": "cql2-json"}) == \
        sorted(r["navn"] for r in rows if r["kapasitet"] > 50 and r["navn"].startswith("S"))
    # cql2-text is the default and can be named.
    assert filtered(srv, "hamar.barnehager", "kapasitet > 50", **{"filter-lang": "cql2-text"}) == want
    r = items(srv, "hamar.barnehager", {"filter": "kapasitet > 50", "filter-lang": "cql2-json"})
    assert r.status_code == 400, show(r)
    r = items(srv, "hamar.barnehager", {"filter": "kapasitet > 50", "filter-lang": "ecql"})
    assert r.status_code == 400, show(r)


def test_cql2_spatial(srv):
    lonlat = lonlat_points(srv)
    box = box_for(lonlat, 0.0008)
    want = inside(lonlat, box)
    got = filtered(srv, "hamar.barnehager", "S_INTERSECTS(geometry, BBOX({!r},{!r},{!r},{!r}))".format(*box))
    assert got == want
    tri = triangle_for(lonlat, box, 0.0004)
    want = sorted(k for k, p in lonlat.items() if tri.contains(Point(p)))
    assert filtered(srv, "hamar.barnehager", f"S_INTERSECTS(geometry, {wkt_polygon(tri)})") == want
    assert filtered(srv, "hamar.barnehager", f"S_INTERSECTS(geometry, {wkt_polygon(tri)})", **{"filter-crs": CRS84}) == want
    # cql2-json spatial
    f = json.dumps({"op": "s_intersects", "args": [{"property": "geometry"},
                                                    {"type": "Polygon", "coordinates": [list(map(list, tri.exterior.coords))]}]})
    assert filtered(srv, "hamar.barnehager", f, **{"filter-lang": "cql2-json"}) == want
    # filter-crs EPSG:25833
    utm = utm_points(srv)
    ubox = box_for(utm, 60.0)
    utri = triangle_for(utm, ubox, 30.0)
    want = sorted(k for k, p in utm.items() if utri.contains(Point(p)))
    assert filtered(srv, "hamar.barnehager", f"S_INTERSECTS(geometry, {wkt_polygon(utri)})",
                    **{"filter-crs": EPSG + "25833"}) == want
    # A filter and a bbox together.
    both = filtered(srv, "hamar.barnehager", "kapasitet > 50", bbox=",".join(repr(v) for v in box))
    assert both == sorted(k for k in inside(lonlat, box) if k in filtered(srv, "hamar.barnehager", "kapasitet > 50"))


def test_cql2_errors(srv):
    for f in ("finnesikke > 1", "Kapasitet > 1 AND finnesikke = 'x'"):
        r = items(srv, "hamar.barnehager", {"filter": f})
        assert r.status_code == 400, show(r)
    # A column ola may not see is the same unknown column as one that does not exist.
    hidden = items(srv, "hamar.eiendommer", {"filter": "eier_fnr = '01010112345'"}, srv.ola())
    assert hidden.status_code == 400, show(hidden)
    unknown = items(srv, "hamar.eiendommer", {"filter": "finnesikke = '01010112345'"}, srv.ola())
    assert unknown.status_code == 400, show(unknown)
    # The same answer but for the name (a "Did you mean" hint comes from the visible columns only).
    def without_hint(r, name):
        return re.sub(r" Did you mean '[^']*'\?", "", r.text.replace(name, "X"))
    assert without_hint(hidden, "eier_fnr") == without_hint(unknown, "finnesikke")
    # Bad CQL2: a 400 whose message says where, as a character position (0- or 1-based; an
    # unterminated string may be reported where it starts or where the text ends).
    for bad, where in (("kapasitet > > 50", {12, 13}), ("kapasitet >", {11, 12}), ("navn LIKE 'A%", {10, 11, 13, 14}),
                       ("kapasitet = 1 AND", {14, 15, 17, 18}), ("kapasitet = 1 ANDD kapasitet = 2", {14, 15, 19, 20})):
        r = items(srv, "hamar.barnehager", {"filter": bad})
        assert r.status_code == 400, show(r)
        if where is not None:
            detail = r.json().get("detail", "")
            positions = {int(n) for n in re.findall(r"\d+", detail)}
            at_end = max(where) >= len(bad) and re.search(r"\bend\b|slutten", detail, re.I)
            assert positions & where or at_end, f"{bad!r}: no character position {sorted(where)} in: {detail}"


def test_cql2_invalid_geometry_literal_is_400(srv):
    # A polygon ring needs at least four positions and must be closed (CQL2's WKT, OGC 06-103r4).
    for bad in ("S_INTERSECTS(geometry, POLYGON((11 60, 11.1 60.8)))",
                "S_INTERSECTS(geometry, POLYGON((11 60, 11.1 60, 11.1 60.8, 11 60.8)))"):
        r = items(srv, "hamar.barnehager", {"filter": bad})
        assert r.status_code == 400, show(r)


# --------------------------------------------------------------------------- versions


def test_paging_pins_the_version_while_a_new_one_is_ingested(srv):
    """hamar/gater gets a new street between two pages; the pages still hold the old version, once.
    Run last: it changes hamar/gater."""
    total = rest_count(srv, "hamar.gater")
    r = items(srv, "hamar.gater", {"limit": 5})
    doc = ok_json(r)
    ids = [f["id"] for f in doc["features"]]
    names = [f["properties"]["gatenavn"] for f in doc["features"]]
    before = {f["id"]: f["properties"] for f in all_items(srv, "hamar.gater")[0]}
    new = {"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::25833"}},
           "features": [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [287100, 6745100]},
                         "properties": {"bydel": "Sentrum", "gatenavn": "Aaa OGC-testgata", "postnummer": "2317",
                                        "poststed": "HAMAR"}}]}
    up = requests.post(f"{srv.base}/api/v1/datasets/hamar/gater/versions", params={"mode": "append"},
                       data=json.dumps(new).encode(), timeout=120,
                       headers={**srv.headers("bjorn"), "Content-Type": GEOJSON})
    assert up.status_code in (200, 201), show(up)
    while link(doc, "next"):
        r = get(urllib.parse.urljoin(r.url, link(doc, "next")["href"]))
        doc = ok_json(r)
        assert doc["numberMatched"] == total, "a page after the first reads the version the first read"
        ids += [f["id"] for f in doc["features"]]
        names += [f["properties"]["gatenavn"] for f in doc["features"]]
    assert len(ids) == len(set(ids)) == total
    assert "Aaa OGC-testgata" not in names
    after, pages = all_items(srv, "hamar.gater")
    assert pages[0]["numberMatched"] == total + 1
    assert "Aaa OGC-testgata" in keys(after, "hamar.gater")
    # Rows the new version did not change keep their ids.
    after_ids = {f["id"]: f["properties"] for f in after}
    assert {i: p for i, p in after_ids.items() if i in before} == before, "feature ids changed for unchanged rows"
    assert set(before) <= set(after_ids)
