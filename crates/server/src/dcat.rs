//! The catalogue as DCAT-AP-NO 2 for data.norge.no (Felles datakatalog): `GET /dcat` by content
//! negotiation (Turtle, RDF/XML, JSON-LD), `/dcat/catalog.ttl|.rdf|.jsonld` for harvesters that
//! do not negotiate, and `tverr dcat export` for publishing offline.
//!
//! The graph is built from catalogue metadata only, never from rows; its design, triple by
//! triple, is `tests/dcat/DESIGN.md`, and Digdir's SHACL shapes check it in
//! `tests/python/test_dcat.py`. Over HTTP it describes the datasets the caller's catalogue lists
//! (`GET /api/v1/datasets`): anonymously the open ones, so a dataset the caller may not see is
//! as absent here as everywhere else. The offline export is the operator's publication and
//! describes every dataset; those that are not open carry no download URL.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use oxrdf::vocab::{rdf, rdfs, xsd};
use oxrdf::{Literal, NamedNode, Triple};
use oxrdfio::{JsonLdProfileSet, RdfFormat, RdfParser, RdfSerializer};
use tverr_access::geo::Crs;
use tverr_access::{DatasetMeta, Engine, Organization, Timestamp};
use tverr_core::Classification;

use crate::auth::Caller;
use crate::problem::{Problem, ProblemKind};
use crate::{AppState, CatalogFilters};

const DCAT: &str = "http://www.w3.org/ns/dcat#";
const DCT: &str = "http://purl.org/dc/terms/";
const FOAF: &str = "http://xmlns.com/foaf/0.1/";
const VCARD: &str = "http://www.w3.org/2006/vcard/ns#";
const CPSV: &str = "http://purl.org/vocab/cpsv#";
const EU: &str = "http://publications.europa.eu/resource/authority/";
const BRREG: &str = "https://data.brreg.no/enhetsregisteret/api/enheter/";
const KOMMUNE: &str = "https://ws.geonorge.no/kommuneinfo/v1/kommuner/";

/// The EU vocabulary concepts the graph may name, with their schemes: merged into every graph,
/// as the shapes check `skos:inScheme` in the data itself.
const VOCABULARY: &str = include_str!("../assets/dcat-vocabulary.ttl");

static VOCABULARY_TRIPLES: LazyLock<Vec<Triple>> = LazyLock::new(|| {
    RdfParser::from_format(RdfFormat::Turtle)
        .for_slice(VOCABULARY.as_bytes())
        .filter_map(Result::ok)
        .map(|q| Triple::new(q.subject, q.predicate, q.object))
        .collect()
});

/// A serialisation of the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DcatFormat {
    /// `text/turtle`.
    Turtle,
    /// `application/rdf+xml`.
    RdfXml,
    /// `application/ld+json`.
    JsonLd,
}

impl DcatFormat {
    /// Every format, in the order a client that accepts any of them gets them.
    pub const ALL: [DcatFormat; 3] = [DcatFormat::Turtle, DcatFormat::RdfXml, DcatFormat::JsonLd];

    /// The media type.
    pub fn media_type(self) -> &'static str {
        match self {
            DcatFormat::Turtle => "text/turtle",
            DcatFormat::RdfXml => "application/rdf+xml",
            DcatFormat::JsonLd => "application/ld+json",
        }
    }

    /// The file extension (`catalog.ttl`).
    pub fn extension(self) -> &'static str {
        match self {
            DcatFormat::Turtle => "ttl",
            DcatFormat::RdfXml => "rdf",
            DcatFormat::JsonLd => "jsonld",
        }
    }

    /// The format a file name's extension names.
    pub fn for_file(name: &str) -> Option<DcatFormat> {
        let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
        match ext.as_str() {
            "ttl" | "turtle" => Some(DcatFormat::Turtle),
            "rdf" | "xml" | "owl" => Some(DcatFormat::RdfXml),
            "jsonld" | "json" => Some(DcatFormat::JsonLd),
            _ => None,
        }
    }

    fn rdf(self) -> RdfFormat {
        match self {
            DcatFormat::Turtle => RdfFormat::Turtle,
            DcatFormat::RdfXml => RdfFormat::RdfXml,
            DcatFormat::JsonLd => RdfFormat::JsonLd { profile: JsonLdProfileSet::empty() },
        }
    }
}

/// One dataset as the graph describes it.
#[derive(Debug, Clone)]
pub struct DcatDataset {
    /// The catalogue's metadata.
    pub meta: DatasetMeta,
    /// The CRS of each geometry column (none: not a geo dataset).
    pub crs: BTreeSet<Crs>,
    /// The first and the last version's commit times.
    pub versions: Option<(Timestamp, Timestamp)>,
}

/// Everything a graph is made from.
#[derive(Debug, Clone, Default)]
pub struct DcatSource {
    /// Organisations, by slug.
    pub orgs: Vec<Organization>,
    /// Department names by `(org, department)`.
    pub departments: BTreeMap<(String, String), String>,
    /// The datasets described.
    pub datasets: Vec<DcatDataset>,
    /// The legal bases the datasets name: `(org, slug)` → (GDPR article, hjemmel, Lovdata URL).
    pub bases: BTreeMap<(String, String), (String, String, Option<String>)>,
}

impl DcatSource {
    /// Reads the catalogue's metadata for `datasets` (and every organisation).
    pub async fn gather(engine: &Engine, datasets: Vec<DatasetMeta>) -> Result<DcatSource, Problem> {
        let catalog = engine.catalog();
        let orgs = catalog.orgs().await.map_err(Problem::from_store)?;
        let departments =
            catalog.departments(None).await.map_err(Problem::from_store)?.into_iter().map(|d| ((d.org, d.slug), d.name)).collect();
        let mut out = Vec::new();
        let mut bases = BTreeMap::new();
        for meta in datasets {
            let Ok(r) = meta.reference().parse::<tverr_core::DatasetRef>() else { continue };
            let crs =
                catalog.columns(&r).await.map_err(Problem::from_store)?.iter().filter_map(|c| Crs::parse(c.crs.as_deref()?)).collect();
            let versions = catalog.versions(&r).await.map_err(Problem::from_store)?;
            let span = match (versions.iter().map(|v| v.committed_at).min(), versions.iter().map(|v| v.committed_at).max()) {
                (Some(a), Some(b)) => Some((a, b)),
                _ => None,
            };
            if let Some(basis) = &meta.legal_basis {
                let key = (meta.org.clone(), basis.clone());
                if let std::collections::btree_map::Entry::Vacant(slot) = bases.entry(key)
                    && let Ok(b) = engine.policy().legal_basis(&meta.org, basis).await
                {
                    slot.insert((b.gdpr_article, b.hjemmel, b.lovdata_url));
                }
            }
            out.push(DcatDataset { meta, crs, versions: span });
        }
        Ok(DcatSource { orgs, departments, datasets: out, bases })
    }
}

/// The file formats a dataset is distributed in: name, title, EU file type, IANA media type.
/// JSON is not among them: `format=json` answers pages (the REST data service), not the whole
/// dataset, and NDJSON is the JSON download.
const DISTRIBUTIONS: [(&str, &str, &str, Option<&str>); 5] = [
    ("csv", "CSV", "CSV", Some("text/csv")),
    ("ndjson", "NDJSON", "JSON", None),
    ("parquet", "Parquet", "PARQUET", Some("application/vnd.apache.parquet")),
    ("xlsx", "Excel (XLSX)", "XLSX", Some("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")),
    ("geojson", "GeoJSON", "GEOJSON", Some("application/geo+json")),
];

const THEMES: [&str; 13] = ["AGRI", "ECON", "EDUC", "ENER", "ENVI", "GOVE", "HEAL", "INTR", "JUST", "REGI", "SOCI", "TECH", "TRAN"];

/// A stored theme as an EU data theme; `OP_DATPRO` (provisional data) when it is none of them,
/// as DCAT-AP-NO requires a theme.
fn theme(stored: Option<&str>) -> String {
    let code = stored.map(|t| t.trim().to_ascii_uppercase()).unwrap_or_default();
    if THEMES.contains(&code.as_str()) { code } else { "OP_DATPRO".into() }
}

/// A stored update frequency as an EU frequency, if it is one Tverr knows.
fn frequency(stored: Option<&str>) -> Option<&'static str> {
    Some(match stored?.trim().to_ascii_lowercase().as_str() {
        "continuous" | "realtime" | "real-time" => "UPDATE_CONT",
        "hourly" => "HOURLY",
        "daily" => "DAILY",
        "weekly" => "WEEKLY",
        "monthly" => "MONTHLY",
        "quarterly" => "QUARTERLY",
        "annual" | "yearly" => "ANNUAL",
        "irregular" => "IRREG",
        "never" => "NEVER",
        _ => return None,
    })
}

/// A stored licence (URI or name) as an EU licence, if it is one Tverr knows.
fn licence(stored: Option<&str>) -> Option<&'static str> {
    let t = stored?.trim().to_ascii_lowercase();
    let t = t.trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/');
    let stem = |s: &str| t == s || t.strip_prefix(s).is_some_and(|rest| rest.starts_with('/'));
    if stem("data.norge.no/nlod/no/2.0") || stem("data.norge.no/nlod/en/2.0") || ["nlod-2.0", "nlod 2.0", "nlod"].contains(&t) {
        Some("NLOD_2_0")
    } else if stem("creativecommons.org/licenses/by/4.0") || ["cc-by-4.0", "cc by 4.0"].contains(&t) {
        Some("CC_BY_4_0")
    } else if stem("creativecommons.org/publicdomain/zero/1.0") || ["cc0-1.0", "cc0 1.0", "cc0"].contains(&t) {
        Some("CC0")
    } else {
        None
    }
}

fn access_right(c: Classification) -> &'static str {
    match c {
        Classification::Open => "PUBLIC",
        Classification::Internal => "RESTRICTED",
        _ => "NON_PUBLIC",
    }
}

/// An IRI typed by a person, when it is a plain absolute http(s) IRI that every serialisation
/// can carry.
fn safe_iri(text: &str) -> Option<NamedNode> {
    let t = text.trim();
    let scheme_ok = t.starts_with("http://") || t.starts_with("https://");
    let clean = !t.chars().any(|c| c.is_control() || c.is_whitespace() || "<>\"{}|\\^`".contains(c));
    if scheme_ok && clean { NamedNode::new(t).ok() } else { None }
}

/// Text as XML 1.0 and every RDF syntax can carry it: control characters other than tab, line
/// feed and carriage return are dropped.
fn text(s: &str) -> String {
    s.chars().filter(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r')).collect()
}

struct Graph {
    triples: Vec<Triple>,
}

impl Graph {
    fn iri(s: &str) -> NamedNode {
        NamedNode::new_unchecked(s)
    }

    fn add(&mut self, s: &NamedNode, p: &str, o: impl Into<oxrdf::Term>) {
        self.triples.push(Triple::new(s.clone(), Self::iri(p), o));
    }

    fn a(&mut self, s: &NamedNode, class: &str) {
        self.triples.push(Triple::new(s.clone(), rdf::TYPE, Self::iri(class)));
    }

    fn nb(&mut self, s: &NamedNode, p: &str, value: &str) {
        self.add(s, p, Literal::new_language_tagged_literal_unchecked(text(value), "nb"));
    }

    fn en(&mut self, s: &NamedNode, p: &str, value: &str) {
        self.add(s, p, Literal::new_language_tagged_literal_unchecked(text(value), "en"));
    }

    fn plain(&mut self, s: &NamedNode, p: &str, value: &str) {
        self.add(s, p, Literal::new_simple_literal(text(value)));
    }

    fn time(&mut self, s: &NamedNode, p: &str, at: &Timestamp) {
        self.add(s, p, Literal::new_typed_literal(at.to_string(), xsd::DATE_TIME));
    }

    fn link(&mut self, s: &NamedNode, p: &str, o: &str) {
        self.add(s, p, Self::iri(o));
    }
}

/// The IRIs of a graph whose public address is `base`.
fn dataset_iri(base: &str, m: &DatasetMeta) -> String {
    format!("{base}/dcat/dataset/{}/{}", m.org, m.slug)
}

/// The graph of `source` with links under `base` (the site's public address, no trailing
/// slash), the vocabulary merged in.
pub fn graph(base: &str, source: &DcatSource) -> Vec<Triple> {
    let mut g = Graph { triples: Vec::new() };
    let Some(first) = source.orgs.first() else { return Vec::new() };
    let publisher = |o: &Organization| format!("{BRREG}{}", o.orgnr);
    let nob = format!("{EU}language/NOB");
    let rest = Graph::iri(&format!("{base}/dcat/service/rest"));
    let ogc = Graph::iri(&format!("{base}/dcat/service/ogc"));

    let root = Graph::iri(&format!("{base}/dcat/catalog"));
    g.a(&root, &format!("{DCAT}Catalog"));
    g.plain(&root, &format!("{DCT}identifier"), root.as_str());
    g.nb(&root, &format!("{DCT}title"), "Datakataloger i Tverr");
    g.en(&root, &format!("{DCT}title"), "Data catalogues in Tverr");
    g.nb(&root, &format!("{DCT}description"), "Datakatalogene til organisasjonene som deler data gjennom Tverr.");
    g.en(&root, &format!("{DCT}description"), "The data catalogues of the organisations that share data through Tverr.");
    g.link(&root, &format!("{DCT}publisher"), &publisher(first));
    g.link(&root, &format!("{DCT}language"), &nob);
    g.link(&root, &format!("{FOAF}homepage"), &format!("{base}/"));
    g.add(&root, &format!("{DCAT}service"), rest.clone());
    g.add(&root, &format!("{DCAT}service"), ogc.clone());

    for o in &source.orgs {
        let agent = Graph::iri(&publisher(o));
        g.a(&agent, &format!("{FOAF}Agent"));
        g.plain(&agent, &format!("{DCT}identifier"), &o.orgnr);
        g.nb(&agent, &format!("{FOAF}name"), &o.name);
        let cat = Graph::iri(&format!("{base}/dcat/catalog/{}", o.slug));
        g.add(&root, &format!("{DCAT}catalog"), cat.clone());
        g.a(&cat, &format!("{DCAT}Catalog"));
        g.plain(&cat, &format!("{DCT}identifier"), cat.as_str());
        g.nb(&cat, &format!("{DCT}title"), &format!("Datakatalog for {}", o.name));
        g.en(&cat, &format!("{DCT}title"), &format!("Data catalogue of {}", o.name));
        g.nb(&cat, &format!("{DCT}description"), &format!("Datasett som {} deler gjennom Tverr.", o.name));
        g.en(&cat, &format!("{DCT}description"), &format!("Datasets {} shares through Tverr.", o.name));
        g.add(&cat, &format!("{DCT}publisher"), agent);
        g.link(&cat, &format!("{DCT}language"), &nob);
    }

    let mut rules = BTreeSet::new();
    for d in &source.datasets {
        let m = &d.meta;
        let Some(org) = source.orgs.iter().find(|o| o.slug == m.org) else { continue };
        let ds = Graph::iri(&dataset_iri(base, m));
        g.add(&Graph::iri(&format!("{base}/dcat/catalog/{}", org.slug)), &format!("{DCAT}dataset"), ds.clone());
        g.a(&ds, &format!("{DCAT}Dataset"));
        g.plain(&ds, &format!("{DCT}identifier"), ds.as_str());
        g.nb(&ds, &format!("{DCT}title"), &m.title);
        let description = if m.description.trim().is_empty() { &m.title } else { &m.description };
        g.nb(&ds, &format!("{DCT}description"), description);
        g.link(&ds, &format!("{DCT}publisher"), &publisher(org));
        let page = format!("{base}/datasett/{}/{}", m.org, m.slug);
        let contact = Graph::iri(&format!("{}/contact", ds.as_str()));
        g.add(&ds, &format!("{DCAT}contactPoint"), contact.clone());
        g.a(&contact, &format!("{VCARD}Organization"));
        let department = source.departments.get(&(m.org.clone(), m.department.clone())).cloned().unwrap_or_else(|| m.department.clone());
        g.plain(&contact, &format!("{VCARD}fn"), &format!("{department}, {}", org.name));
        g.link(&contact, &format!("{VCARD}hasURL"), &page);
        for k in m.keywords.iter().filter(|k| !k.trim().is_empty()) {
            g.nb(&ds, &format!("{DCAT}keyword"), k);
        }
        g.link(&ds, &format!("{DCAT}theme"), &format!("{EU}data-theme/{}", theme(m.theme.as_deref())));
        g.link(&ds, &format!("{DCT}spatial"), &format!("{EU}country/NOR"));
        if let Some(k) = org.kommunenummer.as_deref().filter(|k| k.len() == 4 && k.bytes().all(|b| b.is_ascii_digit())) {
            g.link(&ds, &format!("{DCT}spatial"), &format!("{KOMMUNE}{k}"));
        }
        g.time(&ds, &format!("{DCT}issued"), &m.created_at);
        if let Some((from, to)) = &d.versions {
            let period = Graph::iri(&format!("{}/temporal", ds.as_str()));
            g.add(&ds, &format!("{DCT}temporal"), period.clone());
            g.a(&period, &format!("{DCT}PeriodOfTime"));
            g.time(&period, &format!("{DCAT}startDate"), from);
            g.time(&period, &format!("{DCAT}endDate"), to);
            g.time(&ds, &format!("{DCT}modified"), to);
        }
        if let Some(f) = frequency(m.update_frequency.as_deref()) {
            g.link(&ds, &format!("{DCT}accrualPeriodicity"), &format!("{EU}frequency/{f}"));
        }
        g.link(&ds, &format!("{DCT}accessRights"), &format!("{EU}access-right/{}", access_right(m.classification)));
        if let Some(basis) = &m.legal_basis
            && let Some((article, hjemmel, lovdata)) = source.bases.get(&(m.org.clone(), basis.clone()))
        {
            let rule = Graph::iri(&format!("{base}/dcat/legal-basis/{}/{basis}", m.org));
            g.add(&ds, &format!("{CPSV}follows"), rule.clone());
            if rules.insert(rule.as_str().to_string()) {
                g.a(&rule, &format!("{CPSV}Rule"));
                g.plain(&rule, &format!("{DCT}identifier"), rule.as_str());
                g.link(&rule, &format!("{DCT}type"), "https://data.norge.no/vocabulary/cpsvno#ruleForDataProcessing");
                g.nb(&rule, &format!("{DCT}title"), hjemmel);
                g.nb(&rule, &format!("{DCT}description"), &format!("Behandlingsgrunnlag: GDPR art. {article}; {hjemmel}"));
                if let Some(url) = lovdata.as_deref().and_then(safe_iri) {
                    g.add(&rule, rdfs::SEE_ALSO.as_str(), url);
                }
            }
        }
        for crs in &d.crs {
            g.link(&ds, &format!("{DCT}conformsTo"), &crs.uri());
        }
        g.link(&ds, &format!("{DCT}language"), &nob);
        g.link(&ds, &format!("{DCAT}landingPage"), &page);
        let open = m.classification == Classification::Open;
        for (name, title, file_type, media) in DISTRIBUTIONS {
            if name == "geojson" && d.crs.is_empty() {
                continue;
            }
            let dist = Graph::iri(&format!("{}/distribution/{name}", ds.as_str()));
            g.add(&ds, &format!("{DCAT}distribution"), dist.clone());
            g.a(&dist, &format!("{DCAT}Distribution"));
            g.nb(&dist, &format!("{DCT}title"), title);
            g.link(&dist, &format!("{DCT}format"), &format!("{EU}file-type/{file_type}"));
            if let Some(media) = media {
                g.link(&dist, &format!("{DCAT}mediaType"), &format!("https://www.iana.org/assignments/media-types/{media}"));
            }
            if let Some(l) = licence(m.licence.as_deref()) {
                g.link(&dist, &format!("{DCT}license"), &format!("{EU}licence/{l}"));
            }
            let url = format!("{base}/api/v1/datasets/{}/{}/rows?format={name}", m.org, m.slug);
            g.link(&dist, &format!("{DCAT}accessURL"), &url);
            if open {
                g.link(&dist, &format!("{DCAT}downloadURL"), &url);
            }
            g.add(&dist, &format!("{DCAT}accessService"), rest.clone());
            if name == "geojson" && open {
                g.add(&dist, &format!("{DCAT}accessService"), ogc.clone());
            }
        }
    }

    for (service, id, nb, en, nb_text, en_text) in [
        (
            &rest,
            "rest",
            "Tverr REST-API",
            "Tverr REST API",
            "Radene i datasettene som JSON-sider og filer, med søk og filtre. Data som ikke er åpne, krever API-nøkkel, formål og avtale.",
            "The datasets' rows as JSON pages and files, with search and filters. Data that is not open needs an API token, a purpose and an agreement.",
        ),
        (
            &ogc,
            "ogc",
            "Tverr OGC API – Features",
            "Tverr OGC API – Features",
            "Datasett med geometri som samlinger for QGIS, ArcGIS og GDAL.",
            "Datasets with geometry as collections for QGIS, ArcGIS and GDAL.",
        ),
    ] {
        g.a(service, &format!("{DCAT}DataService"));
        g.plain(service, &format!("{DCT}identifier"), service.as_str());
        g.nb(service, &format!("{DCT}title"), nb);
        g.en(service, &format!("{DCT}title"), en);
        g.nb(service, &format!("{DCT}description"), nb_text);
        g.en(service, &format!("{DCT}description"), en_text);
        g.link(service, &format!("{DCT}publisher"), &publisher(first));
        g.link(service, &format!("{DCT}accessRights"), &format!("{EU}access-right/PUBLIC"));
        let formats: &[&str] = if id == "rest" { &["CSV", "JSON", "GEOJSON", "XLSX", "PARQUET"] } else { &["GEOJSON", "JSON"] };
        for f in formats {
            g.link(service, &format!("{DCT}format"), &format!("{EU}file-type/{f}"));
        }
        if id == "rest" {
            g.link(service, &format!("{DCAT}endpointURL"), &format!("{base}/api/v1"));
            g.link(service, &format!("{DCAT}endpointDescription"), &format!("{base}/api/v1/openapi.json"));
            g.link(service, &format!("{DCAT}landingPage"), &format!("{base}/api"));
        } else {
            g.link(service, &format!("{DCAT}endpointURL"), &format!("{base}/ogc"));
            g.link(service, &format!("{DCAT}endpointDescription"), &format!("{base}/ogc/api"));
            g.link(service, &format!("{DCT}conformsTo"), "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core");
        }
        for d in &source.datasets {
            if id == "ogc" && (d.crs.is_empty() || d.meta.classification != Classification::Open) {
                continue;
            }
            g.link(service, &format!("{DCAT}servesDataset"), &dataset_iri(base, &d.meta));
        }
    }
    g.triples.extend(VOCABULARY_TRIPLES.iter().cloned());
    g.triples
}

/// The graph written in `format`.
pub fn serialize(triples: &[Triple], format: DcatFormat) -> std::io::Result<Vec<u8>> {
    let mut s = RdfSerializer::from_format(format.rdf());
    for (prefix, iri) in [
        ("dcat", DCAT),
        ("dct", DCT),
        ("foaf", FOAF),
        ("vcard", VCARD),
        ("cpsv", CPSV),
        ("skos", "http://www.w3.org/2004/02/skos/core#"),
        ("rdfs", "http://www.w3.org/2000/01/rdf-schema#"),
        ("xsd", "http://www.w3.org/2001/XMLSchema#"),
    ] {
        s = s.with_prefix(prefix, iri).map_err(std::io::Error::other)?;
    }
    let mut w = s.for_writer(Vec::new());
    for t in triples {
        w.serialize_triple(t)?;
    }
    let bytes = w.finish()?;
    if format != DcatFormat::RdfXml || !bytes.contains(&b'\r') {
        return Ok(bytes);
    }
    // An XML parser reads a carriage return as a line feed (XML 1.0 § 2.11), so a text that
    // holds one would not come back as written; the writer puts none of its own in the markup.
    let mut escaped = Vec::with_capacity(bytes.len() + 64);
    for b in bytes {
        if b == b'\r' {
            escaped.extend_from_slice(b"&#13;");
        } else {
            escaped.push(b);
        }
    }
    Ok(escaped)
}

/// Every dataset of the catalogue (the operator's offline publication), as `format`.
pub async fn export(engine: &Engine, base: &str, format: DcatFormat) -> Result<Vec<u8>, Problem> {
    let datasets = engine.catalog().datasets().await.map_err(Problem::from_store)?;
    let source = DcatSource::gather(engine, datasets).await?;
    serialize(&graph(base.trim_end_matches('/'), &source), format).map_err(|e| {
        tracing::error!(error = %e, "the DCAT graph could not be written");
        Problem::internal()
    })
}

/// The DCAT routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/dcat", get(negotiated))
        .route("/dcat/catalog.ttl", get(|s, c, q, h| fixed(s, c, q, h, DcatFormat::Turtle)))
        .route("/dcat/catalog.rdf", get(|s, c, q, h| fixed(s, c, q, h, DcatFormat::RdfXml)))
        .route("/dcat/catalog.jsonld", get(|s, c, q, h| fixed(s, c, q, h, DcatFormat::JsonLd)))
}

/// The format an Accept header prefers among [`DcatFormat::ALL`] (q-values honoured; `*/*`,
/// `text/*` or none is Turtle); `None` when it accepts none of them.
pub fn negotiate(accept: Option<&str>) -> Option<DcatFormat> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else { return Some(DcatFormat::Turtle) };
    let mut best: Option<(f32, usize, DcatFormat)> = None;
    for (order, part) in accept.split(',').enumerate() {
        let mut pieces = part.split(';');
        let kind = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = pieces.filter_map(|p| p.trim().strip_prefix("q=").and_then(|v| v.trim().parse::<f32>().ok())).next().unwrap_or(1.0);
        if q <= 0.0 {
            continue;
        }
        let format = match kind.as_str() {
            "text/turtle" | "application/x-turtle" => DcatFormat::Turtle,
            "application/rdf+xml" => DcatFormat::RdfXml,
            "application/ld+json" => DcatFormat::JsonLd,
            "*/*" | "text/*" => DcatFormat::Turtle,
            "application/*" => DcatFormat::RdfXml,
            _ => continue,
        };
        if best.is_none_or(|(bq, bo, _)| q > bq || (q == bq && order < bo)) {
            best = Some((q, order, format));
        }
    }
    best.map(|(_, _, f)| f)
}

async fn negotiated(state: State<AppState>, caller: Caller, raw: RawQuery, headers: HeaderMap) -> Result<Response, Problem> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let Some(format) = negotiate(accept) else {
        return Err(Problem::new(
            ProblemKind::NotAcceptable,
            "the catalogue is given as text/turtle, application/rdf+xml or application/ld+json",
        ));
    };
    let mut response = fixed(state, caller, raw, headers, format).await?;
    response.headers_mut().insert(header::VARY, HeaderValue::from_static("Accept, Authorization"));
    Ok(response)
}

async fn fixed(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    format: DcatFormat,
) -> Result<Response, Problem> {
    for (k, _) in url::form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()) {
        if k != "purpose" {
            return Err(Problem::invalid_parameter(format!("unknown parameter {k:?}; the catalogue takes none")));
        }
    }
    let listed = crate::find_datasets(&state, &caller, &CatalogFilters::default()).await?;
    let mut datasets: Vec<DatasetMeta> = listed.into_iter().map(|l| l.meta).collect();
    datasets.sort_by(|a, b| (a.org.as_str(), a.slug.as_str()).cmp(&(b.org.as_str(), b.slug.as_str())));
    let source = DcatSource::gather(&state.engine, datasets).await?;
    let base = crate::ogc::base_url(&state, &headers);
    let body = serialize(&graph(&base, &source), format).map_err(|e| {
        tracing::error!(error = %e, "the DCAT graph could not be written");
        Problem::internal()
    })?;
    let content_type = match format {
        DcatFormat::JsonLd => "application/ld+json".to_string(),
        other => format!("{}; charset=utf-8", other.media_type()),
    };
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let private = if matches!(caller.principal, tverr_policy::Principal::Anonymous) { "no-cache" } else { "private, no-store" };
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(private));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers_are_negotiated_with_their_weights() {
        assert_eq!(negotiate(None), Some(DcatFormat::Turtle));
        assert_eq!(negotiate(Some("*/*")), Some(DcatFormat::Turtle));
        assert_eq!(negotiate(Some("application/rdf+xml")), Some(DcatFormat::RdfXml));
        assert_eq!(negotiate(Some("application/json, application/ld+json;q=0.5")), Some(DcatFormat::JsonLd));
        assert_eq!(negotiate(Some("text/turtle;q=0.2, application/rdf+xml;q=0.9")), Some(DcatFormat::RdfXml));
        assert_eq!(negotiate(Some("text/turtle;q=0")), None);
        assert_eq!(negotiate(Some("image/png")), None);
        assert_eq!(negotiate(Some("application/*")), Some(DcatFormat::RdfXml));
    }

    #[test]
    fn stored_words_map_to_eu_vocabularies() {
        assert_eq!(licence(Some("https://data.norge.no/nlod/no/2.0")), Some("NLOD_2_0"));
        assert_eq!(licence(Some("http://creativecommons.org/licenses/by/4.0/legalcode")), Some("CC_BY_4_0"));
        assert_eq!(licence(Some("CC0")), Some("CC0"));
        assert_eq!(licence(Some("https://data.norge.no/nlod/no/1.0")), None);
        assert_eq!(frequency(Some(" Daily ")), Some("DAILY"));
        assert_eq!(frequency(Some("sometimes")), None);
        assert_eq!(theme(Some("educ")), "EDUC");
        assert_eq!(theme(Some("XYZ")), "OP_DATPRO");
        assert_eq!(theme(None), "OP_DATPRO");
    }

    #[test]
    fn user_text_is_kept_and_only_control_characters_go() {
        assert_eq!(text("a\"\"\"b\\c\r\n<x>&\u{2028}"), "a\"\"\"b\\c\r\n<x>&\u{2028}");
        assert_eq!(text("a\u{1}b\u{7f}c"), "abc");
        assert!(safe_iri("https://lovdata.no/lov/2008-06-27-71/§21-4").is_some());
        assert!(safe_iri("javascript:alert(1)").is_none());
        assert!(safe_iri("https://x.no/a b").is_none());
        assert!(safe_iri("https://x.no/<a>").is_none());
    }

    #[test]
    fn every_format_carries_the_vocabulary() {
        let empty = graph("http://x", &DcatSource::default());
        assert!(empty.is_empty(), "no organisation, no catalogue");
        for f in DcatFormat::ALL {
            let text = serialize(&VOCABULARY_TRIPLES, f).unwrap();
            assert!(String::from_utf8(text).unwrap().contains("data-theme"));
        }
        assert!(VOCABULARY_TRIPLES.len() > 100);
    }
}
