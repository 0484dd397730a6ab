//! The demo municipality: Hamar kommune (3403) and Hias IKS, with a deterministic synthetic
//! population and the datasets of DESIGN.md.
//!
//! The generator writes the source files a municipality's systems would export — a Windows-1252
//! `;` CSV from the population register, GeoJSON in EPSG:25833 from the map systems, an XLSX from
//! the case system, NDJSON from sensors — and ingests them through the ordinary ingest path, so
//! the demo exercises the same code as real data. The same seed and size give the same data.

mod access;
mod columns;
mod data;
mod names;

use std::collections::BTreeMap;
use std::path::Path;

use tverr_access::ingest::{ColumnType, IngestOptions};
use tverr_access::{Engine, IngestRequest, NewDataset, QueryError, StoreError, WriteMode};
use tverr_core::{Classification, ColumnCategory, DatasetRef, SubjectKind};
use tverr_policy::{OperatorKey, Principal};

pub use access::{DEMO_PASSWORD, USERS};
pub use data::Population;
use tverr_access::Channel;

/// Why the demo could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// The data directory already holds organisations.
    #[error("the data directory already has data; the demo needs an empty one")]
    NotEmpty,
    /// Writing a source file failed.
    #[error("cannot write a demo file: {0}")]
    Io(#[from] std::io::Error),
    /// Writing an XLSX file failed.
    #[error("cannot write a demo workbook: {0}")]
    Xlsx(#[from] rust_xlsxwriter::XlsxError),
    /// The catalogue refused something.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A write was refused.
    #[error(transparent)]
    Write(#[from] QueryError),
    /// The policy layer refused something.
    #[error(transparent)]
    Policy(#[from] tverr_policy::PolicyError),
}

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Number of persons in the population copy (default 32,000).
    pub persons: usize,
    /// Seed of the generator.
    pub seed: u64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self { persons: 32_000, seed: 3403 }
    }
}

/// What one dataset of the demo is.
struct Spec {
    org: &'static str,
    slug: &'static str,
    department: &'static str,
    title: &'static str,
    description: &'static str,
    classification: Classification,
    theme: &'static str,
    keywords: &'static [&'static str],
    licence: Option<&'static str>,
    frequency: &'static str,
    file: &'static str,
    subjects: &'static [(&'static str, SubjectKind)],
    /// Type overrides, for columns a sample could misjudge.
    types: &'static [(&'static str, ColumnType)],
    categories: &'static [(&'static str, ColumnCategory)],
}

const NLOD: Option<&str> = Some("https://data.norge.no/nlod/no/2.0");

fn specs() -> Vec<Spec> {
    use Classification::*;
    use ColumnCategory::{Personal, ProtectedAddress, SpecialCategory};
    use SubjectKind::*;
    vec![
        Spec {
            org: "hamar",
            slug: "barnehager",
            department: "oppvekst",
            title: "Barnehager i Hamar",
            description: "Kommunale og private barnehager med kapasitet, ledige plasser og plassering.",
            classification: Open,
            theme: "EDUC",
            keywords: &["barnehage", "ledige plasser", "oppvekst"],
            licence: NLOD,
            frequency: "daily",
            file: "barnehager.geojson",
            subjects: &[],
            types: &[],
            categories: &[],
        },
        Spec {
            org: "hamar",
            slug: "innbyggere",
            department: "folkeregister",
            title: "Innbyggere (befolkningskopi)",
            description: "Kopi av Folkeregisteret for Hamar: personer med navn, adresse og adressebeskyttelse.",
            classification: Confidential,
            theme: "GOVE",
            keywords: &["folkeregister", "innbyggere", "adresse"],
            licence: None,
            frequency: "daily",
            file: "innbyggere.csv",
            subjects: &[("fodselsnummer", Person)],
            // Postal codes are codes, not numbers (0150 Oslo keeps its zero), whatever the sample shows.
            types: &[("postnummer", ColumnType::Text)],
            categories: &[
                ("fornavn", Personal),
                ("etternavn", Personal),
                ("fodselsdato", Personal),
                ("adresse", ProtectedAddress),
                ("postnummer", ProtectedAddress),
                ("poststed", ProtectedAddress),
                ("bydel", ProtectedAddress),
                ("adressebeskyttelse", Personal),
            ],
        },
        Spec {
            org: "hamar",
            slug: "barnehageplasser",
            department: "oppvekst",
            title: "Barnehageplasser",
            description: "Tildelte barnehageplasser med barn og foresatte.",
            classification: Confidential,
            theme: "EDUC",
            keywords: &["barnehage", "opptak", "plass"],
            licence: None,
            frequency: "daily",
            file: "barnehageplasser.csv",
            subjects: &[("barn_fnr", Person), ("foresatt_fnr", Person)],
            types: &[],
            // Where a child is every day places the child (and the guardian who brings it).
            categories: &[("barnehage", ProtectedAddress)],
        },
        Spec {
            org: "hamar",
            slug: "barnehagesoknader",
            department: "oppvekst",
            title: "Søknader om barnehageplass",
            description: "Søknader om barnehageplass med ønsket barnehage, status og tilbud.",
            classification: Confidential,
            theme: "EDUC",
            keywords: &["barnehage", "opptak", "søknad"],
            licence: None,
            frequency: "daily",
            file: "barnehagesoknader.csv",
            subjects: &[("barn_fnr", Person), ("foresatt_fnr", Person)],
            types: &[],
            categories: &[("onsket_barnehage", ProtectedAddress), ("tilbudt_barnehage", ProtectedAddress)],
        },
        Spec {
            org: "hamar",
            slug: "husholdningsinntekt",
            department: "oppvekst",
            title: "Husholdningsinntekt for redusert foreldrebetaling",
            description: "Samlet person- og kapitalinntekt fra Skatteetaten for foresatte som søker redusert foreldrebetaling.",
            classification: Confidential,
            theme: "ECON",
            keywords: &["foreldrebetaling", "inntekt", "barnehage"],
            licence: None,
            frequency: "annual",
            file: "husholdningsinntekt.csv",
            subjects: &[("foresatt_fnr", Person)],
            types: &[],
            categories: &[("samlet_inntekt", Personal)],
        },
        Spec {
            org: "hamar",
            slug: "barnehagepriser",
            department: "oppvekst",
            title: "Foreldrebetaling i barnehage",
            description: "Maksimalpris, inntektsgrense (andel av inntekt) og søskenmoderasjon etter forskrift om foreldrebetaling i barnehager.",
            classification: Open,
            theme: "EDUC",
            keywords: &["barnehage", "pris", "foreldrebetaling"],
            licence: NLOD,
            frequency: "annual",
            file: "barnehagepriser.csv",
            subjects: &[],
            types: &[],
            categories: &[],
        },
        Spec {
            org: "hamar",
            slug: "familierelasjoner",
            department: "folkeregister",
            title: "Familierelasjoner (befolkningskopi)",
            description: "Foreldre og barn slik Folkeregisteret registrerer dem.",
            classification: Confidential,
            theme: "SOCI",
            keywords: &["folkeregister", "foreldre", "barn"],
            licence: None,
            frequency: "daily",
            file: "familierelasjoner.csv",
            subjects: &[("barn_fnr", Person), ("forelder_fnr", Person)],
            types: &[],
            categories: &[("relasjon", Personal)],
        },
        Spec {
            org: "hamar",
            slug: "helsetjenester",
            department: "helse",
            title: "Helse- og omsorgstjenester i Hamar",
            description: "Kommunens helse- og omsorgstjenester: hva de gjør, hvem som kan få dem, åpningstider, adresse og ventetid.",
            classification: Open,
            theme: "HEAL",
            keywords: &["helse", "omsorg", "legevakt", "helsestasjon", "ventetid"],
            licence: NLOD,
            frequency: "weekly",
            file: "helsetjenester.geojson",
            subjects: &[],
            types: &[("telefon", ColumnType::Text), ("ventetid_dager", ColumnType::Integer)],
            categories: &[],
        },
        Spec {
            org: "hamar",
            slug: "fastleger",
            department: "helse",
            title: "Fastleger med ledige plasser",
            description: "Fastlegene i kommunen med listelengde og ledige plasser på listen.",
            classification: Open,
            theme: "HEAL",
            keywords: &["fastlege", "lege", "ledige plasser"],
            licence: NLOD,
            frequency: "daily",
            file: "fastleger.geojson",
            subjects: &[],
            types: &[],
            categories: &[],
        },
        Spec {
            org: "hamar",
            slug: "helsestasjon_timer",
            department: "helse",
            title: "Helsestasjonstimer",
            description: "Konsultasjoner på helsestasjonen for barn 0–5 år (særlige kategorier, GDPR art. 9).",
            classification: StrictlyConfidential,
            theme: "HEAL",
            keywords: &["helsestasjon", "barn", "konsultasjon"],
            licence: None,
            frequency: "daily",
            file: "helsestasjon_timer.csv",
            subjects: &[("barn_fnr", Person)],
            types: &[],
            categories: &[("tidspunkt", SpecialCategory), ("konsultasjon", SpecialCategory), ("sted", SpecialCategory)],
        },
        Spec {
            org: "hamar",
            slug: "gater",
            department: "byggesak",
            title: "Gater og veier",
            description: "Gatenavn med bydel, postnummer og midtpunkt: adresser på gatenivå, for avstander og kart.",
            classification: Open,
            theme: "REGI",
            keywords: &["adresse", "gate", "kart"],
            licence: NLOD,
            frequency: "annual",
            file: "gater.geojson",
            subjects: &[],
            types: &[("postnummer", ColumnType::Text)],
            categories: &[],
        },
        Spec {
            org: "hamar",
            slug: "byggesaker",
            department: "byggesak",
            title: "Byggesaker",
            description: "Byggesaker etter plan- og bygningsloven, per matrikkelenhet.",
            classification: Internal,
            theme: "GOVE",
            keywords: &["byggesak", "søknad", "matrikkel"],
            licence: None,
            frequency: "daily",
            file: "byggesaker.xlsx",
            subjects: &[("matrikkel", Property), ("soker_fnr", Person)],
            types: &[],
            // The property an applicant builds on places them: a matrikkel number is an address.
            categories: &[("soker_navn", Personal), ("matrikkel", ProtectedAddress)],
        },
        Spec {
            org: "hamar",
            slug: "eiendommer",
            department: "eiendomsskatt",
            title: "Eiendommer",
            description: "Matrikkelenheter med adresse, areal, eier, eiendomsskattetakst og teig.",
            classification: Internal,
            theme: "GOVE",
            keywords: &["eiendom", "matrikkel", "eiendomsskatt"],
            licence: None,
            frequency: "monthly",
            file: "eiendommer.geojson",
            subjects: &[("matrikkel", Property), ("eier_fnr", Person), ("eier_orgnr", Organization)],
            types: &[],
            // The owner lives there: the address, the parcel and its number place them.
            categories: &[
                ("eier_navn", Personal),
                ("adresse", ProtectedAddress),
                ("geometry", ProtectedAddress),
                ("matrikkel", ProtectedAddress),
            ],
        },
        Spec {
            org: "hamar",
            slug: "reguleringsplaner",
            department: "byggesak",
            title: "Reguleringsplaner",
            description: "Vedtatte og foreslåtte reguleringsplaner med planområde.",
            classification: Open,
            theme: "REGI",
            keywords: &["reguleringsplan", "arealplan", "kart"],
            licence: NLOD,
            frequency: "monthly",
            file: "reguleringsplaner.geojson",
            subjects: &[],
            types: &[],
            categories: &[],
        },
        Spec {
            org: "hamar",
            slug: "kommunegrense",
            department: "byggesak",
            title: "Kommunegrense",
            description: "Hamar kommunes yttergrense (syntetisk i demoen), som kart tegnes på.",
            classification: Open,
            theme: "REGI",
            keywords: &["kommunegrense", "kart", "grense"],
            licence: NLOD,
            frequency: "annual",
            file: "kommunegrense.geojson",
            subjects: &[],
            types: &[("kommunenummer", ColumnType::Text)],
            categories: &[],
        },
        Spec {
            org: "hamar",
            slug: "hjemmetjenester",
            department: "helse",
            title: "Hjemmetjenester",
            description: "Vedtak om helsetjenester i hjemmet (særlige kategorier, GDPR art. 9).",
            classification: StrictlyConfidential,
            theme: "HEAL",
            keywords: &["hjemmetjenester", "helse", "omsorg"],
            licence: None,
            frequency: "daily",
            file: "hjemmetjenester.csv",
            subjects: &[("fodselsnummer", Person)],
            types: &[],
            categories: &[("tjeneste", SpecialCategory), ("timer_per_uke", SpecialCategory)],
        },
        Spec {
            org: "hias",
            slug: "vannmalere",
            department: "vann",
            title: "Vannmålere",
            description: "Vannmålere per matrikkelenhet.",
            classification: Internal,
            theme: "ENVI",
            keywords: &["vann", "vannmåler", "matrikkel"],
            licence: None,
            frequency: "monthly",
            file: "vannmalere.csv",
            subjects: &[("matrikkel", Property)],
            types: &[],
            categories: &[],
        },
        Spec {
            org: "hias",
            slug: "vannmaler_avlesninger",
            department: "vann",
            title: "Vannmåleravlesninger",
            description: "Månedlige avlesninger av vannmålere 2020–2025.",
            classification: Internal,
            theme: "ENVI",
            keywords: &["vann", "avlesning", "forbruk", "tidsserie"],
            licence: None,
            frequency: "monthly",
            file: "vannmaler_avlesninger.csv",
            subjects: &[],
            types: &[],
            categories: &[],
        },
        Spec {
            org: "hias",
            slug: "vannkvalitet",
            department: "vann",
            title: "Vannkvalitet",
            description: "Målinger fra vannkvalitetssensorer i Mjøsa og nettet (tidsserie).",
            classification: Open,
            theme: "ENVI",
            keywords: &["vannkvalitet", "sensor", "Mjøsa", "tidsserie"],
            licence: NLOD,
            frequency: "continuous",
            file: "vannkvalitet.ndjson",
            subjects: &[],
            types: &[],
            categories: &[],
        },
    ]
}

/// Fills an empty store with the demo municipality as the operator: each dataset's write is in
/// the access log like any other, and the demo's agreements are requested and approved by the
/// demo's users, whom the operator acts as. Returns the number of rows ingested.
pub async fn create(engine: &Engine, operator: &OperatorKey, config: &DemoConfig) -> Result<u64, DemoError> {
    let who = &operator.principal();
    let c = engine.catalog();
    if !c.orgs().await?.is_empty() {
        return Err(DemoError::NotEmpty);
    }
    c.create_org("hamar", "Hamar kommune", "970540008", Some("3403")).await?;
    c.create_org("hias", "Hias IKS", data::HIAS_ORGNR, None).await?;
    for (slug, name) in [
        ("oppvekst", "Oppvekst og utdanning"),
        ("helse", "Helse og omsorg"),
        ("byggesak", "Plan og byggesak"),
        ("eiendomsskatt", "Eiendomsskatt"),
        ("folkeregister", "Folkeregister (befolkningskopi)"),
        ("servicetorg", "Servicetorget"),
    ] {
        c.create_department("hamar", slug, name).await?;
    }
    c.create_department("hias", "vann", "Vann og avløp").await?;

    let dir = tempfile::tempdir()?;
    let population = Population::generate(config);
    population.write_files(dir.path())?;
    let mut rows = 0;
    for spec in specs() {
        rows += ingest(engine, who, dir.path(), &spec).await?;
    }
    // The Folkeregister copy is the authority on who is protected, in every dataset.
    let register: DatasetRef = "hamar/innbyggere".parse().expect("a valid name");
    c.set_protection_register(&register, "fodselsnummer", tverr_policy::PROTECTION_COLUMN, "demo").await?;
    // Meter readings name no one; their meter number ties them to a property, and so to its owner.
    let readings: DatasetRef = "hias/vannmaler_avlesninger".parse().expect("a valid name");
    let meters: DatasetRef = "hias/vannmalere".parse().expect("a valid name");
    c.set_protection_link(&readings, "maler_id", &meters, "maler_id", "demo").await?;
    // Parents read their children's data through the Folkeregister copy of family relations.
    let relations: DatasetRef = "hamar/familierelasjoner".parse().expect("a valid name");
    c.set_guardianship_register(&relations, "barn_fnr", "forelder_fnr", "demo").await?;
    access::create(engine.policy(), operator).await?;
    // The legal basis each register with personal data is kept under, as shown on Min side.
    for (dataset, basis) in [
        ("hamar/innbyggere", "folkeregisterloven-10-2"),
        ("hamar/familierelasjoner", "folkeregisterloven-10-2"),
        ("hamar/barnehageplasser", "barnehageloven-18"),
        ("hamar/barnehagesoknader", "barnehageloven-18"),
        ("hamar/husholdningsinntekt", "foreldrebetaling"),
        ("hamar/byggesaker", "pbl-21-4"),
        ("hamar/eiendommer", "eigedomsskattelova-8a"),
        ("hamar/hjemmetjenester", "hol-3-2-hjemmetjenester"),
        ("hamar/helsestasjon_timer", "hol-3-2-helsestasjon"),
        ("hias/vannmalere", "vass-og-avlopsanleggslova-3"),
    ] {
        c.set_dataset_legal_basis(&dataset.parse().expect("a valid name"), Some(basis)).await?;
    }
    Ok(rows)
}

async fn ingest(engine: &Engine, who: &Principal, dir: &Path, spec: &Spec) -> Result<u64, DemoError> {
    let options = IngestOptions {
        types: spec.types.iter().map(|(c, t)| (c.to_string(), *t)).collect(),
        subjects: spec.subjects.iter().map(|(c, k)| (c.to_string(), *k)).collect(),
        ..IngestOptions::default()
    };
    let req = IngestRequest {
        dataset: format!("{}/{}", spec.org, spec.slug).parse::<DatasetRef>().expect("demo slugs are valid"),
        path: dir.join(spec.file),
        options,
        mode: WriteMode::Append,
        create: Some(NewDataset {
            department: spec.department.to_string(),
            title: spec.title.to_string(),
            description: spec.description.to_string(),
            classification: spec.classification,
            theme: Some(spec.theme.to_string()),
            keywords: spec.keywords.iter().map(|k| k.to_string()).collect(),
            licence: spec.licence.map(str::to_string),
            update_frequency: Some(spec.frequency.to_string()),
        }),
        categories: spec.categories.iter().map(|(c, k)| (c.to_string(), *k)).collect::<BTreeMap<_, _>>(),
        descriptions: columns::TITLES
            .iter()
            .filter(|(d, _, _)| *d == format!("{}/{}", spec.org, spec.slug))
            .map(|(_, c, t)| (c.to_string(), t.to_string()))
            .collect(),
        actor: "demo".to_string(),
    };
    Ok(engine.ingest(who, Channel::Demo, req).await?.report.rows)
}
