#!/usr/bin/env python3
"""OGC API - Features items pages, Tverr against pygeoapi, on the same 1 M points, in one run.

1. Data (cached under /var/tmp/tverr-ogc-bench/POINTS/): --points points (default 1,000,000),
   seeded, uniform in EPSG:25833 around Hamar (easting 290,000-320,000, northing
   6,730,000-6,760,000; about 1,100 points per km²), with the properties id (integer), navn and
   kategori (text) and verdi (float). Written twice from the same rounded coordinates: a CSV
   with an EWKT column (`SRID=25833;POINT(x y)`) for `tverr ingest`, and a GeoPackage (layer
   `points`, R-tree index, EPSG:25833) written by ogr2ogr for pygeoapi.
2. Tverr (--tverr): a fresh data directory, `org create bench`, `department create bench/data`,
   `ingest bench/punkter points.csv --create --classification open`, then `tverr serve`; pages
   from `/ogc/collections/bench.punkter/items?limit=100&bbox=…`.
3. pygeoapi (bench/ogc/requirements.txt: the version is pinned) with a generated config: the
   same collection with storage CRS EPSG:25833, limits default 100 / max 10,000, no pretty
   printing, logging at ERROR; provider --provider (OGR by default: GDAL's GeoPackage driver,
   whose bbox filter uses the R-tree; SQLiteGPKG, spatialite's Intersects() with no index, is
   the other choice) under gunicorn (what pygeoapi's docs run it with in production), 2 sync
   workers for the 2 cores (gevent, the default of its Docker image, was slower here); pages from `/collections/points/items?f=json&limit=100&bbox=…`.
4. Load: the same 1,000 seeded random bbox windows in CRS84 (lon/lat; each about
   0.6-1.1 km a side, so it holds about 350-1,300 points and every page of 100 is full) go to
   both servers through `wrk -t2 -c4` with a Lua script that walks the list (each thread from
   its own place); rounds alternate Tverr, pygeoapi, Tverr, … (--rounds each, --seconds each),
   after a warm-up of 50 pages on each side and once the machine is idle. Every round prints pages/s, p50 and
   p99 latency; then the medians over the rounds and the ratio Tverr / pygeoapi.

Sanity (before the rounds): on a few small windows that hold fewer than 100 points, both servers
return exactly the points inside the box (the same ids; such windows are picked so that no point
lies between the lon/lat box and the UTM rectangle of its two corners, which is what pygeoapi
transforms a bbox into, while a server that follows the box's curved edges may differ there);
on full windows both return 100 features, all inside the box, with the same coordinates for
the same id.

Usage: python3 bench/ogc/run.py --tverr ~/.cache/tverr-target/release/tverr
           [--points 1000000] [--rounds 3] [--seconds 10] [--provider OGR|SQLiteGPKG]
       --prepare-only writes the cached data and exits; --pygeoapi-only measures pygeoapi alone.
Needs: wrk, gdal-bin, libgdal-dev, libsqlite3-mod-spatialite (Debian), and
       `pip install -r bench/ogc/requirements.txt` (GDAL's binding must match libgdal: 3.6.2 on
       Debian 12; it builds from source and needs `pip install wheel` and numpy first).
"""
import argparse
import json
import math
import os
import pathlib
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from common import free_port, wait  # noqa: E402

CACHE = pathlib.Path("/var/tmp/tverr-ogc-bench")
SEED = 20261207
EAST = (290_000.0, 320_000.0)
NORTH = (6_730_000.0, 6_760_000.0)
STEDER = ["Hamar", "Storhamar", "Ridabu", "Vang", "Ottestad", "Åkersvika", "Furuberget", "Ingeberg",
          "Nydal", "Hjellum", "Lierskogen", "Solvang", "Børstad", "Prestrud", "Brumunddal", "Stange"]
KATEGORIER = ["bolig", "næring", "landbruk", "skog", "vann", "veg", "fritid", "offentlig"]
WINDOWS = 1000
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
UTM33 = "http://www.opengis.net/def/crs/EPSG/0/25833"
TVERR_COLLECTION = "bench.punkter"
tverr_collection = TVERR_COLLECTION
PG_COLLECTION = "points"

LUA = r"""
local paths = {}
local i = 0
local n = 0
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function init(args)
  wrk.headers["Accept"] = "application/geo+json, application/json"
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
  n = #paths
  i = (tid or 0) * math.floor(n / 2)
end
function request()
  i = i + 1
  return wrk.format("GET", paths[(i % n) + 1])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), e.status, e.connect + e.read + e.write + e.timeout))
end
"""


# ---------------------------------------------------------------- data

def generate(points, folder):
    """The points as numpy arrays, seeded: the same for every run with this count."""
    import numpy as np
    rng = np.random.default_rng(SEED)
    x = np.round(rng.uniform(*EAST, points), 2)
    y = np.round(rng.uniform(*NORTH, points), 2)
    sted = rng.integers(0, len(STEDER), points)
    kat = rng.integers(0, len(KATEGORIER), points)
    verdi = np.round(rng.gamma(2.0, 500.0, points), 2)
    ids = np.arange(1, points + 1)
    np.savez(folder / "points.npz", x=x, y=y, ids=ids)
    with open(folder / "tverr.csv.part", "w", encoding="utf-8", newline="\n") as t, \
            open(folder / "gpkg.csv", "w", encoding="utf-8", newline="\n") as g:
        t.write("id,navn,kategori,verdi,geometry\n")
        g.write("id,navn,kategori,verdi,x,y\n")
        for i, xx, yy, s, k, v in zip(ids.tolist(), x.tolist(), y.tolist(), sted.tolist(), kat.tolist(), verdi.tolist()):
            head = f"{i},{STEDER[s]} {i},{KATEGORIER[k]},{v:.2f}"
            t.write(f"{head},SRID=25833;POINT({xx:.2f} {yy:.2f})\n")
            g.write(f"{head},{xx:.2f},{yy:.2f}\n")
    (folder / "gpkg.csvt").write_text('"Integer","String","String","Real","Real","Real"\n')
    subprocess.run(["ogr2ogr", "-f", "GPKG", str(folder / "points-part.gpkg"), str(folder / "gpkg.csv"),
                    "-nln", "points", "-a_srs", "EPSG:25833", "-oo", "X_POSSIBLE_NAMES=x", "-oo", "Y_POSSIBLE_NAMES=y",
                    "-oo", "KEEP_GEOM_COLUMNS=NO", "-lco", "SPATIAL_INDEX=YES", "-lco", "FID=fid",
                    "-gt", "65536"], check=True)
    os.rename(folder / "points-part.gpkg", folder / "points.gpkg")
    os.rename(folder / "tverr.csv.part", folder / "tverr.csv")
    (folder / "gpkg.csv").unlink()
    (folder / "gpkg.csvt").unlink()


def prepare(points):
    folder = CACHE / str(points)
    if not (folder / "points.gpkg").exists() or not (folder / "tverr.csv").exists():
        folder.mkdir(parents=True, exist_ok=True)
        t = time.time()
        print(f"generating {points:,} points into {folder} …", flush=True)
        generate(points, folder)
        print(f"  done in {time.time() - t:.0f} s", flush=True)
    import numpy as np
    d = np.load(folder / "points.npz")
    return folder, d["x"], d["y"], d["ids"]


# ---------------------------------------------------------------- windows

def lonlat_frame():
    """The lon/lat box inside the data's UTM square (its corners transformed)."""
    from pyproj import Transformer
    to_ll = Transformer.from_crs("EPSG:25833", "EPSG:4326", always_xy=True)
    c = {(e, n): to_ll.transform(e, n) for e in EAST for n in NORTH}
    west = max(c[(EAST[0], n)][0] for n in NORTH)
    east = min(c[(EAST[1], n)][0] for n in NORTH)
    south = max(c[(e, NORTH[0])][1] for e in EAST)
    north = min(c[(e, NORTH[1])][1] for e in EAST)
    return west, south, east, north


def windows(points, count, seed, small=False):
    """Random bbox windows in CRS84, sized for about 350-1,300 points (or ~10 with small)."""
    rng = random.Random(seed)
    scale = math.sqrt(1_000_000 / points)
    west, south, east, north = lonlat_frame()
    out = []
    for _ in range(count):
        if small:
            w, h = 0.0018 * scale, 0.0009 * scale
        else:
            w, h = rng.uniform(0.010, 0.020) * scale, rng.uniform(0.005, 0.010) * scale
        lon = rng.uniform(west + 0.002, east - w - 0.002)
        lat = rng.uniform(south + 0.001, north - h - 0.001)
        out.append((round(lon, 6), round(lat, 6), round(lon + w, 6), round(lat + h, 6)))
    return out


class Truth:
    """Which points each box holds, computed here from the generated coordinates."""

    def __init__(self, x, y, ids):
        import numpy as np
        from pyproj import Transformer
        self.np = np
        self.x, self.y, self.ids = x, y, ids
        self.lon, self.lat = Transformer.from_crs("EPSG:25833", "EPSG:4326", always_xy=True).transform(x, y)
        self.to_utm = Transformer.from_crs("EPSG:4326", "EPSG:25833", always_xy=True)

    def inside(self, box):
        """Ids inside the lon/lat box."""
        m = (self.lon >= box[0]) & (self.lon <= box[2]) & (self.lat >= box[1]) & (self.lat <= box[3])
        return set(self.ids[m].tolist())

    def corner_rect(self, box):
        """Ids inside the UTM rectangle of the box's two corners (pygeoapi's transform_bbox)."""
        e0, n0 = self.to_utm.transform(box[0], box[1])
        e1, n1 = self.to_utm.transform(box[2], box[3])
        m = (self.x >= e0) & (self.x <= e1) & (self.y >= n0) & (self.y <= n1)
        return set(self.ids[m].tolist())

    def lonlat_of(self, pid):
        i = int(pid) - 1
        return float(self.lon[i]), float(self.lat[i])


# ---------------------------------------------------------------- servers

def tverr_cmd(binary, data, *args):
    subprocess.run([binary, "--data", str(data), *args], check=True, capture_output=True,
                   env=dict(os.environ, TVERR_LOG="error"))


def start_tverr(binary, folder, work):
    data = work / "tverr-data"
    t = time.time()
    tverr_cmd(binary, data, "org", "create", "bench", "--name", "Bench", "--orgnr", "970540008")
    tverr_cmd(binary, data, "department", "create", "bench/data", "--name", "Data")
    tverr_cmd(binary, data, "ingest", "bench/punkter", str(folder / "tverr.csv"), "--create", "--department", "data",
              "--title", "Punkter", "--classification", "open", "--crs", "EPSG:25833")
    print(f"tverr ingest of {folder / 'tverr.csv'}: {time.time() - t:.1f} s", flush=True)
    port = free_port()
    proc = subprocess.Popen([binary, "serve", "--data", str(data), "--listen", f"127.0.0.1:{port}",
                             "--queries-per-principal", "64"],
                            env=dict(os.environ, TVERR_LOG="error"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    wait(f"{base}/api/v1/datasets")
    return proc, base


def pygeoapi_config(folder, port, provider, frame):
    gpkg = str(folder / "points.gpkg")
    if provider == "OGR":
        prov = {"type": "feature", "name": "OGR", "id_field": "id", "layer": "points",
                "data": {"source_type": "GPKG", "source": gpkg, "source_capabilities": {"paging": True},
                         "gdal_ogr_options": {"CPL_DEBUG": "NO"}},
                "crs": [CRS84, UTM33], "storage_crs": UTM33}
    else:
        prov = {"type": "feature", "name": "SQLiteGPKG", "id_field": "id", "table": "points", "data": gpkg,
                "crs": [CRS84, UTM33], "storage_crs": UTM33}
    return {
        "server": {"bind": {"host": "127.0.0.1", "port": port}, "url": f"http://127.0.0.1:{port}",
                   "mimetype": "application/json; charset=UTF-8", "encoding": "utf-8", "language": "en-US",
                   "cors": False, "pretty_print": False, "limits": {"default_items": 100, "max_items": 10000},
                   "map": {"url": "https://tile.openstreetmap.org/{z}/{x}/{y}.png", "attribution": "OpenStreetMap"}},
        "logging": {"level": "ERROR"},
        "metadata": {
            "identification": {"title": "Tverr OGC benchmark", "description": "1 M points around Hamar",
                               "keywords": ["bench"], "keywords_type": "theme",
                               "terms_of_service": "https://creativecommons.org/licenses/by/4.0/",
                               "url": "https://example.org"},
            "license": {"name": "CC-BY 4.0", "url": "https://creativecommons.org/licenses/by/4.0/"},
            "provider": {"name": "Bench", "url": "https://example.org"},
            "contact": {"name": "Bench", "email": "bench@example.org", "url": "https://example.org"},
        },
        "resources": {PG_COLLECTION: {
            "type": "collection", "title": "Punkter", "description": "Benchmark points", "keywords": ["points"],
            "extents": {"spatial": {"bbox": list(frame), "crs": CRS84}},
            "providers": [prov],
        }},
    }


def start_pygeoapi(folder, work, provider, frame, workers, worker_class):
    port = free_port()
    cfg = work / "pygeoapi-config.yml"
    openapi = work / "pygeoapi-openapi.yml"
    cfg.write_text(json.dumps(pygeoapi_config(folder, port, provider, frame), indent=1))  # JSON is YAML
    env = dict(os.environ, PYGEOAPI_CONFIG=str(cfg), PYGEOAPI_OPENAPI=str(openapi))
    bindir = os.path.dirname(sys.executable)
    out = subprocess.run([os.path.join(bindir, "pygeoapi"), "openapi", "generate", str(cfg), "--output-file", str(openapi)],
                         env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"pygeoapi openapi generate failed:\n{out.stderr[-3000:]}")
    gunicorn = os.path.join(bindir, "gunicorn")
    proc = subprocess.Popen([gunicorn, "-w", str(workers), "-k", worker_class, "-b", f"127.0.0.1:{port}", "--log-level", "error",
                             "pygeoapi.flask_app:APP"], env=env, stdout=subprocess.DEVNULL, stderr=open(work / "gunicorn.log", "w"))
    base = f"http://127.0.0.1:{port}"
    wait(f"{base}/collections/{PG_COLLECTION}?f=json")
    return proc, base


def tverr_path(box):
    return f"/ogc/collections/{tverr_collection}/items?limit=100&bbox={','.join(map(str, box))}"


def pygeoapi_path(box):
    return f"/collections/{PG_COLLECTION}/items?f=json&limit=100&bbox={','.join(map(str, box))}"


def fetch(base, path):
    req = urllib.request.Request(base + path, headers={"Accept": "application/geo+json, application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.load(r)


def feature_ids(doc):
    out = {}
    for f in doc["features"]:
        props = f.get("properties") or {}
        pid = int(props["id"]) if "id" in props else int(f["id"])
        out[pid] = f["geometry"]["coordinates"]
    return out


# ---------------------------------------------------------------- checks and load

def sanity(sides, truth, points):
    """Both sides return the points in the box: all of them in small windows, 100 in full ones."""
    picked = []
    for box in windows(points, 400, SEED + 2, small=True):
        exact = truth.inside(box)
        if 3 <= len(exact) < 100 and exact == truth.corner_rect(box):
            picked.append((box, exact))
        if len(picked) == 5:
            break
    assert len(picked) == 5, "no small windows with unambiguous edges"
    for box, exact in picked:
        for name, (base, path) in sides.items():
            doc = fetch(base, path(box))
            got = feature_ids(doc)
            returned = doc.get("numberReturned", len(doc["features"]))
            if set(got) != exact or returned != len(exact):
                raise SystemExit(f"sanity: {name} returned {returned} features in {box}, expected {len(exact)}; "
                                 f"missing {sorted(exact - set(got))[:10]}, extra {sorted(set(got) - exact)[:10]}")
    print(f"sanity: {len(picked)} small windows ({', '.join(str(len(e)) for _, e in picked)} points): "
          f"both sides return exactly the points in the box", flush=True)
    full = windows(points, 5, SEED + 3)
    for box in full:
        seen = {}
        allowed = truth.inside(box) | truth.corner_rect(box)
        for name, (base, path) in sides.items():
            doc = fetch(base, path(box))
            got = feature_ids(doc)
            returned = doc.get("numberReturned", len(doc["features"]))
            if returned != 100 or len(got) != 100:
                raise SystemExit(f"sanity: {name} returned {returned} ({len(got)}) features in full window {box}")
            if not set(got) <= allowed:
                raise SystemExit(f"sanity: {name} returned points outside {box}: {sorted(set(got) - allowed)[:10]}")
            for pid, (lon, lat) in got.items():
                tlon, tlat = truth.lonlat_of(pid)
                if abs(lon - tlon) > 1e-6 or abs(lat - tlat) > 1e-6:
                    raise SystemExit(f"sanity: {name} puts id {pid} at {lon},{lat}; expected {tlon},{tlat}")
            seen[name] = set(got)
        common = set.intersection(*seen.values()) if len(seen) > 1 else None
        print(f"sanity: full window {box}: {truth.inside(box).__len__()} points in the box; 100 returned by each side, "
              f"coordinates agree" + (f"; {len(common)} ids in both pages" if common is not None else ""), flush=True)


def wrk(base, paths_file, lua, seconds, threads, connections):
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "60s", "-s", str(lua),
                          base, "--", str(paths_file)], capture_output=True, text=True, check=True).stdout
    m = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)", out)
    if not m:
        raise SystemExit(f"wrk said:\n{out}")
    requests, micros, p50, p99, status_errors, io_errors = map(int, m.groups())
    if status_errors or io_errors:
        raise SystemExit(f"{base}: {status_errors} non-2xx responses, {io_errors} socket errors\n{out}")
    return {"rate": requests / (micros / 1e6), "p50": p50 / 1000, "p99": p99 / 1000, "n": requests}


def cpu_busy(seconds):
    """The share of the machine's CPU time that was busy over the next `seconds`."""
    def sample():
        f = [int(v) for v in open("/proc/stat").readline().split()[1:]]
        return sum(f), f[3] + f[4]
    t0, i0 = sample()
    time.sleep(seconds)
    t1, i1 = sample()
    return 1 - (i1 - i0) / max(1, t1 - t0)


def settle(limit=60):
    """Waits until the machine is idle (a server still working on the requests wrk left behind
    would otherwise run into the next round); returns the last busy share."""
    busy = 1.0
    for _ in range(limit * 2):
        busy = cpu_busy(0.5)
        if busy < 0.10:
            break
    return busy


def warm(base, path, boxes):
    for box in boxes:
        fetch(base, path(box))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tverr", help="the tverr binary (a release build)")
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--provider", choices=["OGR", "SQLiteGPKG"], default="OGR")
    ap.add_argument("--workers", type=int, default=2, help="gunicorn workers for pygeoapi")
    ap.add_argument("--worker-class", default="sync", help="gunicorn worker class: sync (gevent, the default of pygeoapi's Docker image, did 19 pages/s here against 50)")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--connections", type=int, default=4, help="wrk connections (concurrent clients)")
    ap.add_argument("--warm", type=int, default=50, help="windows fetched once on each side before the rounds")
    ap.add_argument("--prepare-only", action="store_true")
    ap.add_argument("--pygeoapi-only", action="store_true")
    args = ap.parse_args()
    if not args.prepare_only and not args.pygeoapi_only and not args.tverr:
        ap.error("--tverr PATH is needed (or --pygeoapi-only)")

    folder, x, y, ids = prepare(args.points)
    if args.prepare_only:
        return
    import pygeoapi
    truth = Truth(x, y, ids)
    frame = lonlat_frame()
    boxes = windows(args.points, WINDOWS, SEED + 1)
    counts = [len(truth.inside(b)) for b in boxes[:100]]
    print(f"{args.points:,} points; {len(boxes)} windows, points per window (first 100): "
          f"min {min(counts)}, median {statistics.median(counts):.0f}, max {max(counts)}", flush=True)

    work = pathlib.Path(tempfile.mkdtemp(prefix="tverr-ogc-bench-"))
    procs = []
    try:
        sides = {}
        if not args.pygeoapi_only:
            proc, base = start_tverr(args.tverr, folder, work)
            procs.append(proc)
            try:
                listed = [c["id"] for c in fetch(base, "/ogc/collections")["collections"]]
            except OSError as e:
                raise SystemExit(f"{args.tverr} does not answer /ogc/collections ({e}); is it a build with OGC API Features?")
            global tverr_collection
            if TVERR_COLLECTION not in listed:
                named = [c for c in listed if "punkter" in c]
                if len(named) != 1:
                    raise SystemExit(f"no collection {TVERR_COLLECTION} at /ogc/collections: {listed}")
                tverr_collection = named[0]
            print(f"Tverr collection: {tverr_collection}", flush=True)
            sides["tverr"] = (base, tverr_path)
        proc, base = start_pygeoapi(folder, work, args.provider, frame, args.workers, args.worker_class)
        procs.append(proc)
        sides["pygeoapi"] = (base, pygeoapi_path)

        sanity(sides, truth, args.points)
        lua = work / "windows.lua"
        lua.write_text(LUA)
        files = {}
        for name, (base, path) in sides.items():
            files[name] = work / f"{name}.paths"
            files[name].write_text("".join(path(b) + "\n" for b in boxes))
            t = time.time()
            warm(base, path, boxes[: args.warm])
            print(f"warm-up {name}: {args.warm} pages one by one in {time.time() - t:.1f} s", flush=True)

        results = {name: [] for name in sides}
        print(f"\nwrk -t{args.threads} -c{args.connections} -d{args.seconds}s, {args.rounds} rounds alternating; "
              f"pygeoapi {pygeoapi.__version__} ({args.provider} provider) under gunicorn -w {args.workers} -k {args.worker_class}", flush=True)
        for r in range(args.rounds):
            for name, (base, _) in sides.items():
                busy = settle()
                if busy >= 0.10:
                    print(f"  (the machine is not idle before this round: {busy:.0%} busy)", flush=True)
                res = wrk(base, files[name], lua, args.seconds, args.threads, args.connections)
                results[name].append(res)
                print(f"round {r + 1} {name:<9} {res['rate']:8.1f} pages/s  p50 {res['p50']:7.1f} ms  "
                      f"p99 {res['p99']:7.1f} ms  ({res['n']} pages)", flush=True)
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)

    print()
    med = {}
    for name, runs in results.items():
        med[name] = {k: statistics.median(r[k] for r in runs) for k in ("rate", "p50", "p99")}
        print(f"{name:<9} median {med[name]['rate']:8.1f} pages/s (rounds: {', '.join(format(r['rate'], '.1f') for r in runs)}); "
              f"p50 {med[name]['p50']:.1f} ms, p99 {med[name]['p99']:.1f} ms "
              f"(p99 rounds: {', '.join(format(r['p99'], '.1f') for r in runs)})")
    if "tverr" in med:
        ratio = med["tverr"]["rate"] / med["pygeoapi"]["rate"]
        print(f"Tverr / pygeoapi = {ratio:.2f}x pages/s (target >= 5); Tverr p99 {med['tverr']['p99']:.1f} ms (target < 50)")


if __name__ == "__main__":
    main()
