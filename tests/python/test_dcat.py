"""The catalogue as DCAT-AP-NO 2 (`/dcat`, `tverr dcat export`), checked by independent tools:
rdflib parses every serialisation, pyshacl validates against Digdir's SHACL shapes
(tests/dcat/DCAT-AP-NO-shacl_shapes_2.00.ttl) with zero violations, and the download URLs it
promises answer. The design it checks is tests/dcat/DESIGN.md.

Warnings the shapes raise that we accept (DESIGN.md says why): a dct:spatial value outside the EU
place lists (the kommune), and a distribution without a licence (non-open data has none).
Every other warning fails a test.

The random-metadata test is seeded; set TVERR_DCAT_SEED to replay a failure."""
import datetime
import functools
import json
import os
import random
import urllib.error
import urllib.parse
import urllib.request
from typing import NamedTuple

import pyshacl
import pytest
import rdflib
from rdflib.compare import isomorphic
from rdflib.namespace import DCTERMS as DCT, FOAF, RDF, RDFS, SH, SKOS

from conftest import ROOT, Tverr

DCAT = rdflib.Namespace("http://www.w3.org/ns/dcat#")
VCARD = rdflib.Namespace("http://www.w3.org/2006/vcard/ns#")
CPSV = rdflib.Namespace("http://purl.org/vocab/cpsv#")
EU = "http://publications.europa.eu/resource/authority/"
THEME = rdflib.Namespace(EU + "data-theme/")
ACCESS = rdflib.Namespace(EU + "access-right/")
FREQ = rdflib.Namespace(EU + "frequency/")
FILETYPE = rdflib.Namespace(EU + "file-type/")
LICENCE = rdflib.Namespace(EU + "licence/")
LANG = rdflib.Namespace(EU + "language/")
NORWAY = rdflib.URIRef(EU + "country/NOR")
BRREG = "https://data.brreg.no/enhetsregisteret/api/enheter/"
KOMMUNE = "https://ws.geonorge.no/kommuneinfo/v1/kommuner/"
RULE_FOR_DATA_PROCESSING = rdflib.URIRef("https://data.norge.no/vocabulary/cpsvno#ruleForDataProcessing")

SHAPES = ROOT / "tests" / "dcat" / "DCAT-AP-NO-shacl_shapes_2.00.ttl"
VOCABULARY = ROOT / "crates" / "server" / "assets" / "dcat-vocabulary.ttl"
REFERENCE = ROOT / "tests" / "dcat" / "reference.ttl"

TURTLE, RDFXML, JSONLD = "text/turtle", "application/rdf+xml", "application/ld+json"
RDFLIB_FORMAT = {TURTLE: "turtle", RDFXML: "xml", JSONLD: "json-ld"}
FILES = {"catalog.ttl": TURTLE, "catalog.rdf": RDFXML, "catalog.jsonld": JSONLD}

FORMATS = ["csv", "ndjson", "parquet", "xlsx"]  # and geojson for data with a geometry column; JSON pages are the REST service, not a download
FILE_TYPE = {"csv": "CSV", "json": "JSON", "ndjson": "JSON", "parquet": "PARQUET", "xlsx": "XLSX", "geojson": "GEOJSON"}
MEDIA_TYPE = {
    "csv": "text/csv",
    "json": "application/json",
    "parquet": "application/vnd.apache.parquet",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "geojson": "application/geo+json",
}  # NDJSON has no IANA registration: no dcat:mediaType
ACCESS_RIGHT = {
    "open": "PUBLIC",
    "internal": "RESTRICTED",
    "confidential": "NON_PUBLIC",
    "strictly-confidential": "NON_PUBLIC",
}
THEMES = ["AGRI", "ECON", "EDUC", "ENER", "ENVI", "GOVE", "HEAL", "INTR", "JUST", "REGI", "SOCI", "TECH", "TRAN"]


# ------------------------------------------------------------------------------------------------
# The mappings of DESIGN.md, as the tests expect them
# ------------------------------------------------------------------------------------------------

def expected_licence(licence):
    """Tverr's licence (URI or name) → EU licence code, or None (no dct:license)."""
    if licence is None:
        return None
    s = licence.strip()
    bare = s.lower().removeprefix("https://").removeprefix("http://").rstrip("/")
    for prefix, code in [
        ("data.norge.no/nlod/no/2.0", "NLOD_2_0"),
        ("data.norge.no/nlod/en/2.0", "NLOD_2_0"),
        ("creativecommons.org/licenses/by/4.0", "CC_BY_4_0"),
        ("creativecommons.org/publicdomain/zero/1.0", "CC0"),
    ]:
        if bare == prefix or bare.startswith(prefix + "/"):
            return code
    return {
        "nlod-2.0": "NLOD_2_0", "nlod 2.0": "NLOD_2_0", "nlod": "NLOD_2_0",
        "cc-by-4.0": "CC_BY_4_0", "cc by 4.0": "CC_BY_4_0",
        "cc0-1.0": "CC0", "cc0 1.0": "CC0", "cc0": "CC0",
    }.get(s.lower())


def expected_frequency(word):
    if word is None:
        return None
    return {
        "continuous": "UPDATE_CONT", "realtime": "UPDATE_CONT", "real-time": "UPDATE_CONT",
        "hourly": "HOURLY", "daily": "DAILY", "weekly": "WEEKLY", "monthly": "MONTHLY",
        "quarterly": "QUARTERLY", "annual": "ANNUAL", "yearly": "ANNUAL",
        "irregular": "IRREG", "never": "NEVER",
    }.get(word.strip().lower())


def expected_theme(theme):
    code = (theme or "").strip().upper()
    return code if code in THEMES else "OP_DATPRO"


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def shapes():
    return rdflib.Graph().parse(SHAPES, format="turtle")


def shacl(graph):
    """(violations, warnings): the top-level results of Digdir's shapes (nested sh:detail results
    of a warning are not counted on their own)."""
    conforms, report, _ = pyshacl.validate(graph, shacl_graph=shapes(), inference="none", allow_warnings=True)
    results = []
    for r in report.objects(None, SH.result):
        results.append({
            "severity": report.value(r, SH.resultSeverity),
            "focus": report.value(r, SH.focusNode),
            "path": report.value(r, SH.resultPath),
            "value": report.value(r, SH.value),
            "message": str(report.value(r, SH.resultMessage)),
        })
    violations = [r for r in results if r["severity"] == SH.Violation]
    warnings = [r for r in results if r["severity"] != SH.Violation]
    assert conforms == (not violations)
    return violations, warnings


def accepted_warning(w):
    if w["path"] == DCT.spatial and str(w["value"]).startswith(KOMMUNE):
        return True
    return w["path"] == DCT.license and w["message"].startswith("Varsel: Fant ingen lisens")


def assert_valid(graph, what):
    violations, warnings = shacl(graph)
    show = lambda rs: "\n".join(f"  {r['focus']} {r['path']} {r['value']}: {r['message']}" for r in rs[:25])
    assert not violations, f"{what}: {len(violations)} violations of DCAT-AP-NO 2:\n{show(violations)}"
    unexpected = [w for w in warnings if not accepted_warning(w)]
    assert not unexpected, f"{what}: {len(unexpected)} unexpected warnings:\n{show(unexpected)}"


def request(url, accept=None, token=None, method="GET", limit=None):
    """(status, headers, body) without raising on HTTP errors; reads at most `limit` bytes."""
    headers = {}
    if accept is not None:
        headers["Accept"] = accept
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.headers, r.read(limit) if limit else r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def parse(body, media_type, base=None):
    return rdflib.Graph().parse(data=body, format=RDFLIB_FORMAT[media_type], publicID=base)


def fetch_graph(base, path="/dcat", accept=TURTLE, token=None):
    status, headers, body = request(base + path, accept=accept, token=token)
    assert status == 200, f"GET {path} (Accept: {accept}) answered {status}: {body[:500]!r}"
    media = headers.get("Content-Type", "").split(";")[0].strip()
    expected = accept if accept in RDFLIB_FORMAT else TURTLE
    assert media == expected, f"GET {path} (Accept: {accept}): Content-Type {headers.get('Content-Type')!r}"
    return parse(body, media)


def deployment_catalog(g):
    tops = [c for c in g.subjects(RDF.type, DCAT.Catalog) if (c, DCAT.catalog, None) in g or str(c).endswith("/dcat/catalog")]
    assert len(tops) == 1, f"expected one catalogue of catalogues, found {tops}"
    return tops[0]


def base_of(g):
    return str(deployment_catalog(g)).removesuffix("/dcat/catalog")


def datasets(g):
    return set(g.subjects(RDF.type, DCAT.Dataset))


def dataset_ref(g, ds):
    """ORG/SLUG of a dataset IRI BASE/dcat/dataset/ORG/SLUG."""
    prefix = base_of(g) + "/dcat/dataset/"
    assert str(ds).startswith(prefix), ds
    return str(ds).removeprefix(prefix)


def distributions(g, ds):
    """{format: distribution} by the last segment of BASE/dcat/dataset/ORG/SLUG/distribution/FORMAT."""
    out = {}
    for d in g.objects(ds, DCAT.distribution):
        assert str(d).startswith(f"{ds}/distribution/"), d
        out[str(d).rsplit("/", 1)[1]] = d
    return out


def on_server(url, base):
    """The same path and query on the server under test (the graph's BASE may be a public URL)."""
    u, b = urllib.parse.urlsplit(str(url)), urllib.parse.urlsplit(base)
    return urllib.parse.urlunsplit((b.scheme, b.netloc, u.path, u.query, ""))


def as_datetime(literal):
    assert isinstance(literal, rdflib.Literal) and literal.datatype == rdflib.XSD.dateTime, literal
    value = literal.toPython()
    assert isinstance(value, datetime.datetime) and value.tzinfo is not None, f"not a zoned xsd:dateTime: {literal!r}"
    return value


def api_time(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def listed(base, token=None):
    """{ORG/SLUG: listing} of GET /api/v1/datasets as this caller."""
    status, _, body = request(base + "/api/v1/datasets", token=token)
    assert status == 200
    return {f"{d['org']}/{d['slug']}": d for d in json.loads(body)["datasets"]}


def metadata(t, ref):
    """The dataset's metadata, columns and versions as the operator sees them (the API shows a
    caller only the columns they may read)."""
    shown = json.loads(t.run("dataset", "show", ref, "--json"))
    return dict(shown["dataset"], columns=shown["columns"], versions=shown["versions"])


def has_geometry(meta):
    return any(c["column_type"] == "geometry" for c in meta["columns"])


def check_dataset(g, ds, meta, org_name, orgnr, kommunenummer, department_name):
    """Everything DESIGN.md says about one dataset, against the catalogue's own metadata."""
    base = base_of(g)
    ref = dataset_ref(g, ds)
    assert ref == f"{meta['org']}/{meta['slug']}"
    one = lambda p: (lambda vs: vs[0] if len(vs) == 1 else pytest.fail(f"{ds} {p}: {vs}"))(list(g.objects(ds, p)))

    assert one(DCT.identifier) == rdflib.Literal(str(ds))
    assert one(DCT.title) == rdflib.Literal(meta["title"], lang="nb")
    description = meta["description"] if meta["description"].strip() else meta["title"]
    assert one(DCT.description) == rdflib.Literal(description, lang="nb")
    publisher = one(DCT.publisher)
    assert publisher == rdflib.URIRef(BRREG + orgnr)
    assert (publisher, RDF.type, FOAF.Agent) in g
    assert (publisher, DCT.identifier, rdflib.Literal(orgnr)) in g
    assert (publisher, FOAF.name, rdflib.Literal(org_name, lang="nb")) in g
    assert set(g.objects(ds, DCAT.keyword)) == {rdflib.Literal(k, lang="nb") for k in meta["keywords"] if k.strip()}
    assert one(DCAT.theme) == THEME[expected_theme(meta["theme"])]
    spatial = {NORWAY} | ({rdflib.URIRef(KOMMUNE + kommunenummer)} if kommunenummer else set())
    assert set(g.objects(ds, DCT.spatial)) == spatial
    assert one(DCT.language) == LANG.NOB
    assert one(DCAT.landingPage) == rdflib.URIRef(f"{base}/datasett/{ref}")
    assert one(DCT.accessRights) == ACCESS[ACCESS_RIGHT[meta["classification"]]]
    frequency = expected_frequency(meta["update_frequency"])
    assert list(g.objects(ds, DCT.accrualPeriodicity)) == ([FREQ[frequency]] if frequency else [])

    contact = one(DCAT.contactPoint)
    assert contact == rdflib.URIRef(f"{ds}/contact")
    assert (contact, RDF.type, VCARD.Organization) in g
    assert (contact, VCARD.fn, rdflib.Literal(f"{department_name}, {org_name}")) in g
    assert (contact, VCARD.hasURL, rdflib.URIRef(f"{base}/datasett/{ref}")) in g

    versions = sorted(api_time(v["committed_at"]) for v in meta["versions"])
    near = lambda a, b: abs((a - b).total_seconds()) < 1
    assert near(as_datetime(one(DCT.issued)), api_time(meta["created_at"]))
    assert near(as_datetime(one(DCT.modified)), versions[-1])
    period = one(DCT.temporal)
    assert (period, RDF.type, DCT.PeriodOfTime) in g
    assert near(as_datetime(g.value(period, DCAT.startDate)), versions[0])
    assert near(as_datetime(g.value(period, DCAT.endDate)), versions[-1])

    if meta.get("legal_basis"):
        rule = one(CPSV.follows)
        assert rule == rdflib.URIRef(f"{base}/dcat/legal-basis/{meta['org']}/{meta['legal_basis']}")
        assert (rule, RDF.type, CPSV.Rule) in g and (rule, DCT.type, RULE_FOR_DATA_PROCESSING) in g
    else:
        assert list(g.objects(ds, CPSV.follows)) == []

    geo = has_geometry(meta)
    crs = {c["crs"] for c in meta["columns"] if c["column_type"] == "geometry"}
    assert set(g.objects(ds, DCT.conformsTo)) == {
        rdflib.URIRef("http://www.opengis.net/def/crs/EPSG/0/" + c.removeprefix("EPSG:")) for c in crs
    }
    dists = distributions(g, ds)
    assert sorted(dists) == sorted(FORMATS + (["geojson"] if geo else [])), f"{ref}: {sorted(dists)}"
    licence = expected_licence(meta["licence"])
    open_ = meta["classification"] == "open"
    for fmt, d in dists.items():
        assert (d, RDF.type, DCAT.Distribution) in g
        assert list(g.objects(d, DCT.format)) == [FILETYPE[FILE_TYPE[fmt]]], (ref, fmt)
        media = [str(m) for m in g.objects(d, DCAT.mediaType)]
        assert media == ([f"https://www.iana.org/assignments/media-types/{MEDIA_TYPE[fmt]}"] if fmt in MEDIA_TYPE else [])
        assert list(g.objects(d, DCT.license)) == ([LICENCE[licence]] if licence else []), (ref, fmt, meta["licence"])
        access_url = f"{base}/api/v1/datasets/{ref}/rows?format={fmt}"
        assert list(g.objects(d, DCAT.accessURL)) == [rdflib.URIRef(access_url)]
        assert list(g.objects(d, DCAT.downloadURL)) == ([rdflib.URIRef(access_url)] if open_ else []), (ref, fmt)
        services = {rdflib.URIRef(f"{base}/dcat/service/rest")}
        if fmt == "geojson" and open_:
            services.add(rdflib.URIRef(f"{base}/dcat/service/ogc"))
        assert set(g.objects(d, DCAT.accessService)) == services, (ref, fmt)


def check_structure(g, orgs):
    """Catalogue of catalogues → one catalogue per organisation → its datasets; the services.
    `orgs`: {slug: (name, orgnr)}."""
    base = base_of(g)
    top = deployment_catalog(g)
    assert (top, DCT.identifier, rdflib.Literal(str(top))) in g
    catalogs = set(g.objects(top, DCAT.catalog))
    assert catalogs == {rdflib.URIRef(f"{base}/dcat/catalog/{o}") for o in orgs}
    assert len(list(g.objects(top, DCT.publisher))) == 1
    assert g.value(top, DCT.publisher) in {rdflib.URIRef(BRREG + nr) for _, nr in orgs.values()}
    in_catalogs = []
    for slug, (name, orgnr) in orgs.items():
        c = rdflib.URIRef(f"{base}/dcat/catalog/{slug}")
        assert (c, RDF.type, DCAT.Catalog) in g
        assert (c, DCT.identifier, rdflib.Literal(str(c))) in g
        assert list(g.objects(c, DCT.publisher)) == [rdflib.URIRef(BRREG + orgnr)]
        for ds in g.objects(c, DCAT.dataset):
            assert dataset_ref(g, ds).split("/")[0] == slug
            in_catalogs.append(ds)
    assert sorted(in_catalogs) == sorted(datasets(g)), "every dataset in exactly one organisation's catalogue"
    services = set(g.objects(top, DCAT.service))
    rest, ogc = rdflib.URIRef(f"{base}/dcat/service/rest"), rdflib.URIRef(f"{base}/dcat/service/ogc")
    assert services == {rest, ogc}
    assert g.value(rest, DCAT.endpointURL) == rdflib.URIRef(f"{base}/api/v1")
    assert g.value(rest, DCAT.endpointDescription) == rdflib.URIRef(f"{base}/api/v1/openapi.json")
    assert g.value(ogc, DCAT.endpointURL) == rdflib.URIRef(f"{base}/ogc")
    assert g.value(ogc, DCAT.endpointDescription) == rdflib.URIRef(f"{base}/ogc/api")
    assert (ogc, DCT.conformsTo, rdflib.URIRef("http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core")) in g
    assert set(g.objects(rest, DCAT.servesDataset)) == datasets(g)
    geo_open = {ds for ds in datasets(g) if "geojson" in distributions(g, ds) and (ds, DCT.accessRights, ACCESS.PUBLIC) in g}
    assert set(g.objects(ogc, DCAT.servesDataset)) == geo_open


# ------------------------------------------------------------------------------------------------
# The design itself: reference.ttl and the vocabulary
# ------------------------------------------------------------------------------------------------

def test_the_reference_graph_conforms_with_the_vocabulary_merged():
    g = rdflib.Graph().parse(REFERENCE, format="turtle")
    g.parse(VOCABULARY, format="turtle")
    assert_valid(g, "reference.ttl + dcat-vocabulary.ttl")


def test_without_the_vocabulary_the_shapes_fail():
    """The reason the vocabulary is merged into every graph: the shapes look for skos:inScheme."""
    g = rdflib.Graph().parse(REFERENCE, format="turtle")
    violations, _ = shacl(g)
    assert {r["path"] for r in violations} >= {DCT.accessRights, DCT.format, DCT.license, DCT.language}


def test_the_vocabulary_covers_every_code_the_mappings_can_produce():
    v = rdflib.Graph().parse(VOCABULARY, format="turtle")
    codes = (
        [THEME[t] for t in THEMES + ["OP_DATPRO"]]
        + [ACCESS[a] for a in set(ACCESS_RIGHT.values())]
        + [FREQ[f] for f in {expected_frequency(w) for w in ["continuous", "hourly", "daily", "weekly", "monthly", "quarterly", "annual", "irregular", "never"]}]
        + [FILETYPE[f] for f in set(FILE_TYPE.values())]
        + [LICENCE[c] for c in ["NLOD_2_0", "CC_BY_4_0", "CC0"]]
        + [LANG.NOB, LANG.ENG, NORWAY]
    )
    for c in codes:
        assert (c, RDF.type, SKOS.Concept) in v, c
        scheme = v.value(c, SKOS.inScheme)
        assert scheme is not None and str(c).startswith(str(scheme) + "/"), c
        assert {l.language for l in v.objects(c, SKOS.prefLabel)} >= {"nb", "en"}, c


# ------------------------------------------------------------------------------------------------
# a) + b): the demo municipality
# ------------------------------------------------------------------------------------------------

DEMO_ORGS = {"hamar": ("Hamar kommune", "970540008"), "hias": ("Hias IKS", "964934002")}
DEMO_KOMMUNE = {"hamar": "3403", "hias": None}


class Demo(NamedTuple):
    base: str
    token: str
    departments: dict  # ORG/SLUG → name
    tverr: Tverr


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo municipality (what `tverr serve --demo` builds), served on a free port."""
    t = Tverr(tmp_path_factory.mktemp("dcat-demo") / "data")
    t.run("demo", "--persons", "400")
    token = t.run("token", "create", "--user", "ola").strip()
    departments = dict(line.split(None, 1) for line in t.run("department", "list").splitlines() if line.strip())
    with t.serve() as base:
        yield Demo(base, token, {k: v.strip() for k, v in departments.items()}, t)


@pytest.fixture(scope="module")
def anonymous_graph(demo):
    base = demo.base
    return fetch_graph(base)


@pytest.fixture(scope="module")
def ola_graph(demo):
    base, token = demo.base, demo.token
    return fetch_graph(base, token=token)


@pytest.mark.parametrize("token", [False, True], ids=["anonymous", "ola"])
def test_every_serialisation_is_the_same_valid_graph(demo, token):
    base, ola = demo.base, demo.token
    token = ola if token else None
    graphs = {accept: fetch_graph(base, accept=accept, token=token) for accept in (TURTLE, RDFXML, JSONLD)}
    for name, media in FILES.items():
        status, headers, body = request(f"{base}/dcat/{name}", token=token)
        assert status == 200, f"/dcat/{name}: {status}"
        assert headers.get("Content-Type", "").split(";")[0].strip() == media, f"/dcat/{name}: {headers.get('Content-Type')}"
        graphs[name] = parse(body, media)
    reference = graphs[TURTLE]
    assert len(datasets(reference)) > 0
    for what, g in graphs.items():
        assert isomorphic(g, reference), f"{what} is not the same graph as text/turtle"
        assert_valid(g, what)


@pytest.mark.parametrize("accept,media", [
    (None, TURTLE),
    ("*/*", TURTLE),
    ("text/*", TURTLE),
    ("application/rdf+xml;q=0.5, application/ld+json;q=0.9", JSONLD),
    ("text/html;q=0.9, application/rdf+xml;q=0.8", RDFXML),
    ("application/json, application/ld+json;q=0.5", JSONLD),
])
def test_negotiation_picks_the_best_format(demo, accept, media):
    base = demo.base
    status, headers, body = request(base + "/dcat", accept=accept)
    assert status == 200, (accept, status)
    assert headers.get("Content-Type", "").split(";")[0].strip() == media, (accept, headers.get("Content-Type"))
    parse(body, media)


@pytest.mark.parametrize("accept", ["image/png", "application/pdf", "text/turtle;q=0"])
def test_an_accept_it_cannot_serve_is_406(demo, accept):
    base = demo.base
    status, headers, body = request(base + "/dcat", accept=accept)
    assert status == 406, (accept, status)


def test_negotiated_answers_are_not_mixed_up_by_caches(demo):
    base, token = demo.base, demo.token
    _, headers, _ = request(base + "/dcat", accept=TURTLE)
    assert "accept" in headers.get("Vary", "").lower(), f"Vary: {headers.get('Vary')!r}"
    _, headers, _ = request(base + "/dcat", accept=TURTLE, token=token)
    vary, cache = headers.get("Vary", "").lower(), headers.get("Cache-Control", "").lower()
    assert "authorization" in vary or "private" in cache or "no-store" in cache, (vary, cache)


def test_the_anonymous_catalogue_lists_exactly_the_open_datasets(demo, anonymous_graph):
    base = demo.base
    g = anonymous_graph
    refs = {dataset_ref(g, ds) for ds in datasets(g)}
    api = listed(base)
    assert refs == set(api), f"DCAT and /api/v1/datasets differ: {refs ^ set(api)}"
    assert refs and all(d["classification"] == "open" for d in api.values())
    for ds in datasets(g):
        assert (ds, DCT.accessRights, ACCESS.PUBLIC) in g


def test_a_token_adds_the_own_organisations_datasets_still_without_download_urls(demo, anonymous_graph, ola_graph):
    base, token = demo.base, demo.token
    g = ola_graph
    refs = {dataset_ref(g, ds) for ds in datasets(g)}
    api = listed(base, token)
    assert refs == set(api), f"DCAT and /api/v1/datasets (ola) differ: {refs ^ set(api)}"
    anonymous = {dataset_ref(anonymous_graph, ds) for ds in datasets(anonymous_graph)}
    extra = refs - anonymous
    assert extra and any(r.startswith("hamar/") for r in extra), extra
    for ds in datasets(g):
        ref = dataset_ref(g, ds)
        right = g.value(ds, DCT.accessRights)
        assert right == ACCESS[ACCESS_RIGHT[api[ref]["classification"]]], (ref, right)
        if right != ACCESS.PUBLIC:
            assert right in (ACCESS.RESTRICTED, ACCESS.NON_PUBLIC)
            for d in distributions(g, ds).values():
                assert (d, DCAT.downloadURL, None) not in g, f"{d} of non-open {ref} has a download URL"
                status, _, _ = request(on_server(g.value(d, DCAT.accessURL), base))
                assert status in (401, 403, 404), f"{ref}: anonymous access URL answered {status}"


@pytest.mark.parametrize("who", ["anonymous", "ola"])
def test_every_dataset_is_described_as_designed(demo, anonymous_graph, ola_graph, who):
    g = anonymous_graph if who == "anonymous" else ola_graph
    check_structure(g, DEMO_ORGS)
    for ds in sorted(datasets(g)):
        meta = metadata(demo.tverr, dataset_ref(g, ds))
        org = meta["org"]
        department = demo.departments[f"{org}/{meta['department']}"]
        check_dataset(g, ds, meta, DEMO_ORGS[org][0], DEMO_ORGS[org][1], DEMO_KOMMUNE[org], department)


def test_legal_bases_are_rules_with_their_lovdata_link(ola_graph):
    g = ola_graph
    ds = rdflib.URIRef(f"{base_of(g)}/dcat/dataset/hamar/byggesaker")
    assert ds in datasets(g)
    rule = g.value(ds, CPSV.follows)
    assert rule == rdflib.URIRef(f"{base_of(g)}/dcat/legal-basis/hamar/pbl-21-4")
    assert (rule, DCT.identifier, rdflib.Literal(str(rule))) in g
    assert (rule, DCT.type, RULE_FOR_DATA_PROCESSING) in g
    assert "21-4" in str(g.value(rule, DCT.title)) and g.value(rule, DCT.title).language == "nb"
    assert g.value(rule, DCT.description) is not None
    assert str(g.value(rule, RDFS.seeAlso)).startswith("https://lovdata.no/lov/2008-06-27-71/")


def test_open_distributions_download_without_a_token(demo, anonymous_graph):
    base = demo.base
    g = anonymous_graph
    checked = 0
    for ds in datasets(g):
        for fmt, d in distributions(g, ds).items():
            urls = list(g.objects(d, DCAT.downloadURL))
            assert len(urls) == 1, f"{d}: {urls}"
            assert urls == list(g.objects(d, DCAT.accessURL))
            limit = None if fmt == "json" else 1 << 20
            status, headers, body = request(on_server(urls[0], base), limit=limit)
            assert status == 200, f"{urls[0]}: {status} {body[:300]!r}"
            media = headers.get("Content-Type", "").split(";")[0].strip()
            if fmt in MEDIA_TYPE:
                assert media == MEDIA_TYPE[fmt], (urls[0], media)
            assert body, urls[0]
            if fmt == "json":
                page = json.loads(body)
                # A download is the whole dataset, not the first page of it.
                assert not (isinstance(page, dict) and page.get("next")), f"{urls[0]} is a paged response"
            checked += 1
    assert checked >= 6


def test_every_service_endpoint_answers(demo, anonymous_graph):
    base = demo.base
    g = anonymous_graph
    for service in g.subjects(RDF.type, DCAT.DataService):
        for p in (DCAT.endpointURL, DCAT.endpointDescription):
            url = g.value(service, p)
            status, _, _ = request(on_server(url, base))
            assert status < 400, f"{service} {p}: {url} answered {status}"


def test_the_catalogue_uses_one_base_for_every_tverr_iri(demo, anonymous_graph):
    base = base_of(anonymous_graph)
    assert urllib.parse.urlsplit(base).scheme in ("http", "https") and not base.endswith("/")
    ours = [str(s) for s in anonymous_graph.subjects() if "/dcat/" in str(s)]
    assert ours and all(s.startswith(base + "/dcat/") for s in ours)


# ------------------------------------------------------------------------------------------------
# c) random metadata, `tverr dcat export`
# ------------------------------------------------------------------------------------------------

PIECES = [
    "Barnehager", "æøå ÆØÅ", "Tromsø", "Ǥáŋŋo", "😀", "👩‍👩‍👧", "漢字", "עברית", "العربية", "e\u0301", "\u200d", "\u00a0",
    '"', "'", '"""', "'''", "\\", "\\n", "\\u0041", "<", ">", "<b>fet</b>", "<script>alert(1)</script>", "&", "&amp;",
    "]]>", "<!--", "-->", "@en", "^^xsd:string", "# kommentar", "_:b0", "<http://x>", "{", "}", "|", "`", "^", "%20",
    "\n", "\r\n", "\t", "  ", "§ 21-4", "ISO 8859-1: \u00e9", "\u2028", "\ufeff", "\U0001d54f",
]


def random_text(rng, long=False):
    n = rng.randint(200, 800) if long else rng.randint(1, 8)
    text = "".join(rng.choice(PIECES) + rng.choice(["", " "]) for _ in range(n))
    return "T" + text + "x"  # never blank, never leading or trailing whitespace


def random_dataset(rng, i):
    classification = rng.choice(["open", "open", "internal", "confidential", "strictly-confidential", "åpen", "intern", "fortrolig", "strengt-fortrolig"])
    canonical = {"åpen": "open", "intern": "internal", "fortrolig": "confidential", "strengt-fortrolig": "strictly-confidential"}.get(classification, classification)
    licences = [
        "https://data.norge.no/nlod/no/2.0", "https://creativecommons.org/licenses/by/4.0/",
        "https://creativecommons.org/publicdomain/zero/1.0/", "NLOD 2.0", "CC-BY-4.0", "CC0 1.0",
        "http://data.norge.no/nlod/no/2.0/", "https://example.org/egen-lisens",
    ]
    return {
        "slug": f"ds{i:02d}",
        "title": random_text(rng, long=rng.random() < 0.1),
        "description": rng.choice(["", " ", random_text(rng), random_text(rng, long=True)]),
        "keywords": [random_text(rng) for _ in range(rng.randint(0, 4))],
        "classification": classification,
        "canonical": canonical,
        "theme": rng.choice(THEMES + ["educ", None, "XYZ"]),
        "licence": rng.choice(licences) if canonical == "open" or rng.random() < 0.2 else None,
        "frequency": rng.choice(["daily", "weekly", "monthly", "quarterly", "annual", "yearly", "continuous",
                                 "realtime", "irregular", "never", "hourly", "Monthly", "fortnightly", None]),
        "geo": rng.random() < 0.3,
        "legal_basis": canonical != "open" and rng.random() < 0.5,
    }


@pytest.fixture(scope="module")
def random_catalogue(tmp_path_factory):
    seed = int(os.environ.get("TVERR_DCAT_SEED", random.randrange(1 << 32)))
    print(f"TVERR_DCAT_SEED={seed}")
    rng = random.Random(seed)
    tmp = tmp_path_factory.mktemp("dcat-random")
    t = Tverr(tmp / "data")
    t.run("org", "create", "kommune", "--name", "Test kommune", "--orgnr", "970540008", "--kommunenummer", "3403")
    t.run("department", "create", "kommune/data", "--name", "Data og analyse «test»")
    t.run("legal-basis", "create", "kommune/grunnlag", "--gdpr", "6(1)(e)", "--hjemmel", "kommuneloven § 1-1 «test» <x>",
          "--lovdata", "https://lovdata.no/lov/2018-06-22-83/§1-1")
    plain = tmp / "plain.csv"
    plain.write_text("id,verdi\n1,a\n2,b\n", encoding="utf-8")
    geo = tmp / "geo.csv"
    geo.write_text('id,wkt\n1,"POINT (11.07 60.79)"\n2,"POINT (11.10 60.80)"\n', encoding="utf-8")
    specs = [random_dataset(rng, i) for i in range(30)]
    for s in specs:
        args = ["ingest", f"kommune/{s['slug']}", str(geo if s["geo"] else plain), "--create", "--department", "data",
                "--title", s["title"], "--description", s["description"], "--classification", s["classification"]]
        for k in s["keywords"]:
            args += ["--keyword", k]
        for flag in ("theme", "licence", "frequency"):
            if s[flag] is not None:
                args += [f"--{flag}", s[flag]]
        t.run(*args)
        if s["legal_basis"]:
            t.run("dataset", "legal-basis", f"kommune/{s['slug']}", "grunnlag")
    out = tmp / "catalog.ttl"
    t.run("dcat", "export", "--out", str(out), "--base-url", "http://example.test")
    return t, specs, out


def test_random_metadata_exports_a_valid_catalogue(random_catalogue):
    _, specs, out = random_catalogue
    g = rdflib.Graph().parse(out, format="turtle")
    assert_valid(g, "tverr dcat export")
    assert base_of(g) == "http://example.test"
    check_structure(g, {"kommune": ("Test kommune", "970540008")})
    assert {dataset_ref(g, ds) for ds in datasets(g)} == {f"kommune/{s['slug']}" for s in specs}


def test_random_metadata_round_trips_exactly(random_catalogue):
    t, specs, out = random_catalogue
    g = rdflib.Graph().parse(out, format="turtle")
    for s in specs:
        ds = rdflib.URIRef(f"http://example.test/dcat/dataset/kommune/{s['slug']}")
        titles = list(g.objects(ds, DCT.title))
        assert titles == [rdflib.Literal(s["title"], lang="nb")], f"{s['slug']}: {titles!r} != {s['title']!r}"
        description = s["description"] if s["description"].strip() else s["title"]
        assert list(g.objects(ds, DCT.description)) == [rdflib.Literal(description, lang="nb")], s["slug"]
        assert set(g.objects(ds, DCAT.keyword)) == {rdflib.Literal(k, lang="nb") for k in s["keywords"]}, s["slug"]
        assert g.value(ds, DCT.accessRights) == ACCESS[ACCESS_RIGHT[s["canonical"]]], s["slug"]
        assert g.value(ds, DCAT.theme) == THEME[expected_theme(s["theme"])], (s["slug"], s["theme"])
        frequency = expected_frequency(s["frequency"])
        assert list(g.objects(ds, DCT.accrualPeriodicity)) == ([FREQ[frequency]] if frequency else []), (s["slug"], s["frequency"])
        licence = expected_licence(s["licence"])
        dists = distributions(g, ds)
        assert sorted(dists) == sorted(FORMATS + (["geojson"] if s["geo"] else [])), s["slug"]
        for fmt, d in dists.items():
            assert list(g.objects(d, DCT.license)) == ([LICENCE[licence]] if licence else []), (s["slug"], s["licence"])
            has_download = (d, DCAT.downloadURL, None) in g
            assert has_download == (s["canonical"] == "open"), (s["slug"], fmt)
        if s["geo"]:
            assert (ds, DCT.conformsTo, rdflib.URIRef("http://www.opengis.net/def/crs/EPSG/0/4326")) in g
        rule = g.value(ds, CPSV.follows)
        if s["legal_basis"]:
            assert rule == rdflib.URIRef("http://example.test/dcat/legal-basis/kommune/grunnlag")
            assert g.value(rule, DCT.title) == rdflib.Literal("kommuneloven § 1-1 «test» <x>", lang="nb")
        else:
            assert rule is None
        assert (ds, DCT.spatial, rdflib.URIRef(KOMMUNE + "3403")) in g
        contact = g.value(ds, DCAT.contactPoint)
        assert g.value(contact, VCARD.fn) == rdflib.Literal("Data og analyse «test», Test kommune")


def test_random_metadata_survives_every_served_format(random_catalogue):
    """The same text through the server's RDF/XML and JSON-LD writers (XML 1.0 has no bare
    carriage return: an unescaped \\r in a title would come back as \\n)."""
    t, specs, _ = random_catalogue
    with t.serve() as base:
        graphs = {m: fetch_graph(base, accept=m) for m in (TURTLE, RDFXML, JSONLD)}
    for media, g in graphs.items():
        assert isomorphic(g, graphs[TURTLE]), f"{media} is not the same graph as text/turtle"
        assert_valid(g, media)
        b = base_of(g)
        open_specs = [s for s in specs if s["canonical"] == "open"]
        assert {dataset_ref(g, ds) for ds in datasets(g)} == {f"kommune/{s['slug']}" for s in open_specs}
        for s in open_specs:
            ds = rdflib.URIRef(f"{b}/dcat/dataset/kommune/{s['slug']}")
            assert list(g.objects(ds, DCT.title)) == [rdflib.Literal(s["title"], lang="nb")], (media, s["slug"])


def test_export_writes_the_format_its_file_name_asks_for(random_catalogue, tmp_path):
    t, _, turtle = random_catalogue
    reference = rdflib.Graph().parse(turtle, format="turtle")
    for name, media in FILES.items():
        out = tmp_path / name
        t.run("dcat", "export", "--out", str(out), "--base-url", "http://example.test")
        g = rdflib.Graph().parse(out, format=RDFLIB_FORMAT[media])
        assert isomorphic(g, reference), name
