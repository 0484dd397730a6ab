//! Argument parsing and the commands.

use std::io::Write;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use crate::access;
use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use futures::StreamExt;
use tverr_access::ingest::IngestError;
use tverr_access::{Catalog, CreateSettings, Engine, ExportFormat, ExportOptions, IngestSettings, QueryError, StoreConfig, StoreError};
use tverr_access::{Channel, RecordKind};
use tverr_core::{ColumnCategory, DatasetRef};
use tverr_policy::PolicyError;

/// Tverr: a data platform for Norwegian municipalities — data across departments, lawfully.
#[derive(Debug, Parser)]
#[command(name = "tverr", version, about, long_about = None)]
pub struct Cli {
    /// Data directory (catalogue and lake by default).
    #[arg(long, global = true, env = "TVERR_DATA", default_value = "./tverr-data")]
    data: PathBuf,
    /// Catalogue database URL: sqlite://PATH or postgres://… (default: DATA/catalog.db).
    #[arg(long, global = true, env = "TVERR_CATALOG")]
    catalog: Option<String>,
    /// Object storage URL for the lake: a path, file://… or s3://bucket/prefix (default: DATA/lake).
    #[arg(long, global = true, env = "TVERR_STORAGE")]
    storage: Option<String>,
    /// The access log's signing key (Ed25519, PKCS#8; made on first use). Keep it outside the
    /// catalogue's backups (default: DATA/audit-key.pk8).
    #[arg(long, global = true, env = "TVERR_AUDIT_KEY")]
    audit_key: Option<PathBuf>,
    /// The key data subjects are recorded under in the access log (HMAC of the fødselsnummer;
    /// 32 random bytes, made on first use). Keep it outside the catalogue and its backups
    /// (default: DATA/subject-key).
    #[arg(long, global = true, env = "TVERR_SUBJECT_KEY")]
    subject_key: Option<PathBuf>,
    /// The key that seals connectors' secrets, a file outside the catalogue (default:
    /// DATA/connector-key).
    #[arg(long, global = true, env = "TVERR_CONNECTOR_KEY")]
    connector_key: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of its largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Organisations.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Departments of organisations.
    #[command(subcommand)]
    Department(DepartmentCommand),
    /// Read a file into a dataset as one new version.
    Ingest(IngestArgs),
    /// List datasets.
    Datasets(JsonFlag),
    /// Datasets.
    #[command(subcommand)]
    Dataset(DatasetCommand),
    /// Versions of a dataset: time, actor, mode, rows, source file and its SHA-256.
    History(DatasetArg),
    /// Write a dataset's rows to a file or stdout.
    Export(ExportArgs),
    /// Run a read-only SQL query over tables named org.dataset.
    Sql(SqlArgs),
    /// Everything you may see about one person, property or organisation, for a purpose.
    Lookup(LookupArgs),
    /// Erase every row about a subject from datasets (GDPR art. 17): a new version without the
    /// rows, then a vacuum that deletes every file still holding them. Operator only.
    Erase(EraseArgs),
    /// Local users (admins, stewards, employees, auditors).
    #[command(subcommand)]
    User(access::UserCommand),
    /// API tokens for local users.
    #[command(subcommand)]
    Token(access::TokenCommand),
    /// Legal bases (behandlingsgrunnlag): GDPR article and Norwegian hjemmel.
    #[command(subcommand, name = "legal-basis")]
    LegalBasis(access::LegalBasisCommand),
    /// Purposes (formål) data may be read for.
    #[command(subcommand)]
    Purpose(access::PurposeCommand),
    /// Sharing agreements (delingsavtaler).
    #[command(subcommand)]
    Agreement(access::AgreementCommand),
    /// The access log: verify it, export a checkpoint.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Address protection: which datasets are the authoritative registers of who is protected
    /// (a Folkeregister copy). A person's protection then applies in every dataset.
    #[command(subcommand)]
    Protection(ProtectionCommand),
    /// The catalogue as DCAT-AP-NO 2, for data.norge.no.
    #[command(subcommand)]
    Dcat(DcatCommand),
    /// Fill an empty data directory with the demo municipality (Hamar kommune, Hias IKS).
    Demo(DemoArgs),
    /// Connectors: datasets pulled from municipal systems on a schedule (HTTP, PostgreSQL,
    /// drop folders).
    #[command(subcommand)]
    Connector(crate::connectors::ConnectorCommand),
    /// Subscriptions: webhooks told of every new version of a dataset, signed, at least once.
    #[command(subcommand)]
    Subscription(crate::subscriptions::SubscriptionCommand),
    /// Copy the catalogue, the key files and every dataset into a new directory, consistent at
    /// one catalogue generation. Nodes keep serving; a write waits only until its dataset is
    /// copied. Operator only; the directory holds the keys, so keep it as safe as the servers.
    Backup(BackupArgs),
    /// Put a backup into this deployment (the catalogue, storage and key files the options
    /// name), which must be empty: a catalogue without rows, storage without the backup's
    /// tables. Every file is checked against the manifest before anything is written.
    Restore(BackupArgs),
    /// Run the HTTP server.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
struct BackupArgs {
    /// The backup directory (for a backup: new or empty).
    dir: PathBuf,
    /// Print the manifest's summary as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum ProtectionCommand {
    /// Read address protection from this dataset (its person key and protection column).
    Register {
        /// ORG/DATASET, e.g. hamar/innbyggere.
        dataset: String,
        /// The person key column.
        #[arg(long, default_value = "fodselsnummer")]
        key: String,
        /// The column with ugradert, fortrolig or strengt_fortrolig.
        #[arg(long, default_value = tverr_policy::PROTECTION_COLUMN)]
        status: String,
    },
    /// Stop reading address protection from this dataset.
    Remove {
        /// ORG/DATASET.
        dataset: String,
    },
    /// Protect rows of a dataset through a key that is not a subject key: rows whose COLUMN
    /// holds the TARGET-COLUMN value of a protected row of TARGET (a meter reading through its
    /// meter's property) are protected alike.
    Link {
        /// ORG/DATASET whose rows are protected, e.g. hias/vannmaler_avlesninger.
        dataset: String,
        /// Its column with the key.
        #[arg(long)]
        column: String,
        /// ORG/DATASET the key points into (with a person or property key), e.g. hias/vannmalere.
        #[arg(long)]
        to: String,
        /// The target's column with the key (default: the same name).
        #[arg(long)]
        target_column: Option<String>,
    },
    /// Remove a protection link.
    Unlink {
        /// ORG/DATASET.
        dataset: String,
        /// Its linked column.
        #[arg(long)]
        column: String,
    },
    /// The registers of address protection, and the protection links.
    List(JsonFlag),
}

#[derive(Debug, Subcommand)]
enum OrgCommand {
    /// Create an organisation.
    Create {
        /// Slug, e.g. hamar.
        slug: String,
        /// Name, e.g. "Hamar kommune".
        #[arg(long)]
        name: String,
        /// Organisasjonsnummer (9 digits, checked).
        #[arg(long)]
        orgnr: String,
        /// Kommunenummer (4 digits, with its leading zero).
        #[arg(long)]
        kommunenummer: Option<String>,
    },
    /// List organisations.
    List(JsonFlag),
}

#[derive(Debug, Subcommand)]
enum DepartmentCommand {
    /// Create a department: ORG/SLUG.
    Create {
        /// ORG/SLUG, e.g. hamar/oppvekst.
        path: String,
        /// Name, e.g. "Oppvekst og utdanning".
        #[arg(long)]
        name: String,
    },
    /// List departments (of one organisation, or all).
    List {
        /// Organisation slug.
        org: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
}

#[derive(Debug, Subcommand)]
enum DcatCommand {
    /// Write every dataset's metadata as DCAT-AP-NO 2 (the organisation's publication: datasets
    /// that are not open are described, with no download URL), for publishing offline.
    Export {
        /// The file: .ttl (Turtle), .rdf (RDF/XML) or .jsonld (JSON-LD); `-` for Turtle on stdout.
        #[arg(long)]
        out: PathBuf,
        /// The site's public address the links start with.
        #[arg(long, env = "TVERR_PUBLIC_URL", default_value = "http://127.0.0.1:8080")]
        base_url: String,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the whole chain and every signed checkpoint; fails naming the first bad entry.
    Verify {
        /// A checkpoint kept elsewhere (from `audit checkpoint --out`): also detects truncation
        /// and a rollback of the whole database.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Entries matching the filters (all organisations; the operator's search is logged too).
    Search {
        /// Only this user name.
        #[arg(long)]
        user: Option<String>,
        /// Only entries naming this dataset (ORG/DATASET).
        #[arg(long)]
        dataset: Option<String>,
        /// Only entries about this organisation.
        #[arg(long)]
        org: Option<String>,
        /// From (RFC 3339 or YYYY-MM-DD), inclusive.
        #[arg(long)]
        from: Option<String>,
        /// Before (RFC 3339 or YYYY-MM-DD).
        #[arg(long)]
        to: Option<String>,
        /// Only accesses that released data about the person with this fødselsnummer.
        #[arg(long)]
        subject: Option<String>,
    },
    /// Retention: remove entries older than the last checkpoint signed before a time; what
    /// remains still verifies from that checkpoint.
    Prune {
        /// Keep entries from this many days back.
        #[arg(long, conflicts_with = "before", required_unless_present = "before")]
        keep_days: Option<u32>,
        /// Remove what was checkpointed before this time (RFC 3339 or YYYY-MM-DD).
        #[arg(long)]
        before: Option<String>,
    },
    /// Sign the current head of the log and write the checkpoint, to keep elsewhere.
    Checkpoint {
        /// Output file (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum DatasetCommand {
    /// Show a dataset's metadata, schema and versions.
    Show(DatasetArg),
    /// Change what a column is: raising protection applies at once; lowering it (from
    /// special-category, protected-address or person-id) waits for a second steward's approval.
    Category {
        /// ORG/DATASET.
        dataset: String,
        /// The column.
        column: String,
        /// none | person-id | personal | special-category | protected-address.
        category: String,
        #[command(flatten)]
        actor: access::Actor,
    },
    /// Approve a requested change of a column's category (not the one who asked).
    ApproveCategory {
        /// The change's number.
        id: i64,
        #[command(flatten)]
        actor: access::Actor,
    },
    /// Deny a requested change of a column's category.
    DenyCategory {
        /// The change's number.
        id: i64,
        #[command(flatten)]
        actor: access::Actor,
    },
    /// Every change of a column's category, with its state.
    CategoryChanges(JsonFlag),
    /// Record the legal basis a dataset is processed under (shown to the people it is about).
    LegalBasis {
        /// ORG/DATASET.
        dataset: String,
        /// The slug of one of the organisation's legal bases; leave out to clear it.
        basis: Option<String>,
    },
    /// Name a dataset as a register of parental responsibility (parents and children, e.g. a
    /// Folkeregister copy): a citizen then reads the data of their children under 16 on Min side.
    Parents {
        /// ORG/DATASET, e.g. hamar/familierelasjoner.
        dataset: String,
        /// The child's person key column.
        #[arg(long)]
        child: String,
        /// The parent's person key column.
        #[arg(long)]
        parent: String,
    },
}

#[derive(Debug, Args)]
struct JsonFlag {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct DatasetArg {
    /// ORG/DATASET.
    dataset: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct IngestArgs {
    /// ORG/DATASET.
    dataset: String,
    /// The source file.
    file: PathBuf,
    #[command(flatten)]
    how: IngestFlags,
    /// Who ingests (recorded with the version; default: $USER).
    #[arg(long, env = "TVERR_ACTOR")]
    actor: Option<String>,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
}

/// How a file is ingested: the same flags for `tverr ingest` and `tverr connector create`.
#[derive(Debug, Args)]
pub struct IngestFlags {
    /// Create the dataset (it must not exist).
    #[arg(long)]
    create: bool,
    /// Owning department (with --create).
    #[arg(long, requires = "create")]
    department: Option<String>,
    /// Title (with --create).
    #[arg(long, requires = "create")]
    title: Option<String>,
    /// Description (with --create).
    #[arg(long, requires = "create", default_value = "")]
    description: String,
    /// open | internal | confidential | strictly-confidential (with --create).
    #[arg(long, requires = "create")]
    classification: Option<String>,
    /// EU data-theme code, e.g. EDUC, ENVI, GOVE (with --create).
    #[arg(long, requires = "create")]
    theme: Option<String>,
    /// Keyword (repeatable, with --create).
    #[arg(long = "keyword", requires = "create")]
    keywords: Vec<String>,
    /// Licence (with --create).
    #[arg(long, requires = "create")]
    licence: Option<String>,
    /// Update frequency, e.g. daily, monthly (with --create).
    #[arg(long, requires = "create")]
    frequency: Option<String>,
    /// COL=person|property|organization: validate and canonicalise a subject key (repeatable).
    #[arg(long = "subject", value_name = "COL=KIND")]
    subjects: Vec<String>,
    /// COL=none|person-id|personal|special-category|protected-address (repeatable).
    #[arg(long = "category", value_name = "COL=CATEGORY")]
    categories: Vec<String>,
    /// COL=TEXT: the column's description, the title people read above its values (repeatable).
    #[arg(long = "describe", value_name = "COL=TEXT")]
    descriptions: Vec<String>,
    /// append | replace | upsert.
    #[arg(long, default_value = "append")]
    mode: String,
    /// Key column for --mode upsert.
    #[arg(long)]
    key: Option<String>,
    /// csv | json | ndjson | geojson | xlsx | parquet (default: detected).
    #[arg(long)]
    format: Option<String>,
    /// XLSX sheet (default: the first).
    #[arg(long)]
    sheet: Option<String>,
    /// COL=boolean|integer|float|date|timestamp|text: override an inferred type (repeatable).
    #[arg(long = "type", value_name = "COL=TYPE")]
    types: Vec<String>,
    /// Add columns the dataset does not have yet (as nullable columns).
    #[arg(long)]
    evolve: bool,
    /// CRS of GeoJSON without a crs member: EPSG:4326 (default), EPSG:25832, EPSG:25833.
    #[arg(long)]
    crs: Option<String>,
}

impl IngestFlags {
    pub fn settings(self) -> IngestSettings {
        let a = self;
        IngestSettings {
            mode: Some(a.mode),
            key: a.key,
            format: a.format,
            sheet: a.sheet,
            subjects: a.subjects,
            categories: a.categories,
            descriptions: a.descriptions,
            types: a.types,
            crs: a.crs,
            evolve: a.evolve,
            create: a.create.then_some(CreateSettings {
                department: a.department,
                title: a.title,
                description: a.description,
                classification: a.classification,
                theme: a.theme,
                keywords: a.keywords,
                licence: a.licence,
                frequency: a.frequency,
            }),
        }
    }
}

#[derive(Debug, Args)]
struct ExportArgs {
    /// ORG/DATASET.
    dataset: String,
    /// csv | json | ndjson | geojson | xlsx | parquet.
    #[arg(long)]
    format: String,
    /// A version (time travel); default the latest.
    #[arg(long)]
    version: Option<i64>,
    /// A SQL boolean expression over the dataset's columns.
    #[arg(long = "where")]
    filter: Option<String>,
    /// Output file (default: stdout).
    #[arg(long)]
    out: Option<PathBuf>,
    /// CSV: the field separator, one of , ; | or tab.
    #[arg(long, default_value = ",")]
    delimiter: String,
    /// CSV: the decimal mark, . or , (Norwegian Excel reads `;` with `,`).
    #[arg(long, default_value = ".")]
    decimal: String,
    /// CSV: start with a UTF-8 byte-order mark (Excel).
    #[arg(long)]
    bom: bool,
    /// CSV: write text cells as they are; by default a cell that starts with =, +, -, @, tab or
    /// carriage return gets a leading ' so spreadsheets do not run it as a formula.
    #[arg(long)]
    raw: bool,
    /// Geometry in this CRS: EPSG:4326, EPSG:25832 or EPSG:25833 (default: as stored).
    #[arg(long)]
    crs: Option<String>,
    /// The purpose of the read (required for non-open data).
    #[arg(long, env = "TVERR_PURPOSE")]
    purpose: Option<String>,
    #[command(flatten)]
    actor: access::Actor,
}

#[derive(Debug, Args)]
struct SqlArgs {
    /// The query, e.g. "SELECT bydel, sum(ledige_plasser) FROM hamar.barnehager GROUP BY bydel".
    query: String,
    /// table | csv | json | ndjson.
    #[arg(long, default_value = "table")]
    format: String,
    /// The purpose of the read (required for non-open data).
    #[arg(long, env = "TVERR_PURPOSE")]
    purpose: Option<String>,
    #[command(flatten)]
    actor: access::Actor,
}

#[derive(Debug, Args)]
struct LookupArgs {
    /// person | property | organization.
    kind: String,
    /// Fødselsnummer, matrikkel unit (3403-12/345) or organisasjonsnummer.
    id: String,
    /// The purpose of the look-up (required).
    #[arg(long, env = "TVERR_PURPOSE")]
    purpose: Option<String>,
    /// Print the look-up as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    actor: access::Actor,
}

#[derive(Debug, Args)]
struct EraseArgs {
    /// person | property | organization.
    kind: String,
    /// The subject's key.
    id: String,
    /// A dataset to erase from, ORG/DATASET (repeatable; at least one).
    #[arg(long = "dataset", required = true)]
    datasets: Vec<String>,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Persons in the population copy.
    #[arg(long, default_value_t = 32_000)]
    persons: usize,
    /// Generator seed.
    #[arg(long, default_value_t = 3403)]
    seed: u64,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "TVERR_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Fill the data directory with the demo municipality when it is empty, and offer the
    /// demo's citizen log-in (any fødselsnummer, no password) on the web log-in page.
    #[arg(long)]
    demo: bool,
    /// OIDC issuers to accept tokens from: a JSON file (see the README).
    #[arg(long, env = "TVERR_OIDC")]
    oidc: Option<PathBuf>,
    /// Persons in the demo population (with --demo).
    #[arg(long, default_value_t = 32_000)]
    persons: usize,
    /// The site's public address, e.g. https://data.hamar.kommune.no: the absolute links of OGC
    /// API Features and DCAT-AP-NO start with it (default: the request's Host)
    #[arg(long, env = "TVERR_PUBLIC_URL")]
    public_url: Option<String>,
    /// The largest JSON request body, in bytes.
    #[arg(long, env = "TVERR_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// The largest uploaded file, in bytes.
    #[arg(long, env = "TVERR_MAX_UPLOAD_BYTES", default_value_t = 1 << 30)]
    max_upload_bytes: u64,
    /// How long one query may run, in seconds, to its last row.
    #[arg(long, env = "TVERR_QUERY_SECONDS", default_value_t = 60)]
    query_seconds: u64,
    /// Queries one principal may run at the same time.
    #[arg(long, env = "TVERR_QUERIES_PER_PRINCIPAL", default_value_t = 4)]
    queries_per_principal: usize,
    /// Connections one client (an IPv4 address or an IPv6 /64) may hold open at the same time
    /// (more are closed at once).
    #[arg(long, env = "TVERR_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 1024)]
    max_connections_per_client: usize,
    /// Connections the server holds open at the same time, from all clients.
    #[arg(long, env = "TVERR_MAX_CONNECTIONS", default_value_t = 8192)]
    max_connections: usize,
    /// Seconds the server waits for a request head, or for the next part of a request body,
    /// before it closes the connection.
    #[arg(long, env = "TVERR_CLIENT_SECONDS", default_value_t = 20)]
    client_seconds: u64,
}

/// Input problems exit with 65 (EX_DATAERR), refusals of the policy layer with 77 (EX_NOPERM),
/// other failures with 1.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if let Some(q) = e.downcast_ref::<QueryError>() {
        return match q {
            QueryError::NotAllowed(_) | QueryError::Invalid(_) => 65,
            QueryError::PurposeRequired(_) | QueryError::PurposeNotAllowed { .. } => 77,
            QueryError::Store(s) => store_exit_code(s),
            QueryError::Policy(PolicyError::Forbidden(_) | PolicyError::Unauthenticated(_)) => 77,
            _ => 1,
        };
    }
    if let Some(p) = e.downcast_ref::<PolicyError>() {
        return match p {
            PolicyError::Invalid { .. } => 65,
            PolicyError::Forbidden(_) | PolicyError::Unauthenticated(_) => 77,
            PolicyError::Store(StoreError::Invalid { .. }) => 65,
            _ => 1,
        };
    }
    e.downcast_ref::<StoreError>().map_or(1, store_exit_code)
}

fn store_exit_code(e: &StoreError) -> u8 {
    match e {
        StoreError::Ingest(IngestError::Invalid(_)) | StoreError::Invalid { .. } => 65,
        _ => 1,
    }
}

fn dataset_ref(s: &str) -> Result<DatasetRef> {
    Ok(DatasetRef::from_str(s)?)
}

/// The engine over the store and access log the options name.
async fn open(cli: &Cli) -> Result<Engine> {
    let config = StoreConfig { data_dir: cli.data.clone(), catalog_url: cli.catalog.clone(), storage_url: cli.storage.clone() };
    let (per_query, server, sort) = memory_limits()?;
    let engine = Engine::open(&config, audit_config(cli)?).await.context("cannot open the store")?;
    let connectors = crate::connectors::config(&cli.data, cli.connector_key.clone())?;
    let subscriptions = crate::subscriptions::config(&connectors)?;
    Ok(engine
        .with_named_limit(named_limit()?)
        .with_memory_limits(per_query, server)
        .with_sort_memory(sort)
        .with_connectors(connectors)?
        .with_subscriptions(subscriptions)?)
}

/// The deployment's files outside the catalogue and the lake that a backup holds: the log's
/// signing key and subject key (required), the connectors' key and the log's witness (when
/// they exist).
fn deployment_files(cli: &Cli) -> Result<Vec<tverr_access::DeploymentFile>> {
    let audit = audit_config(cli)?;
    let connectors = crate::connectors::config(&cli.data, cli.connector_key.clone())?;
    let file = |name: &str, path: PathBuf, required: bool| tverr_access::DeploymentFile { name: name.into(), path, required };
    let mut files = vec![
        file("audit-key.pk8", audit.key_path, true),
        file("subject-key", audit.subject_key_path, true),
        file("connector-key", connectors.key_path, false),
    ];
    if let Some(witness) = audit.witness_path {
        files.push(file("audit-witness.ndjson", witness, false));
    }
    Ok(files)
}

fn print_manifest(m: &tverr_access::Manifest, json: bool, done: &str) -> Result<()> {
    let versions: Vec<serde_json::Value> =
        m.datasets.iter().map(|d| serde_json::json!({"dataset": d.dataset, "version": d.version})).collect();
    if json {
        let summary = serde_json::json!({
            "generation": m.generation, "created_at": m.created_at, "datasets": versions,
            "tables": m.tables.len(), "rows": m.rows(), "files": m.files.len(), "bytes": m.bytes(),
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "{done}: catalogue generation {}, {} datasets, {} catalogue rows in {} tables, {} files, {} bytes",
            m.generation,
            m.datasets.len(),
            m.rows(),
            m.tables.len(),
            m.files.len(),
            m.bytes()
        );
    }
    Ok(())
}

/// `tverr restore DIR`: the store is opened without the access log (whose keys the backup
/// brings), the backup put in, then the log opened, the restore recorded, and the log verified.
async fn restore(cli: &Cli, a: &BackupArgs) -> Result<()> {
    let config = StoreConfig { data_dir: cli.data.clone(), catalog_url: cli.catalog.clone(), storage_url: cli.storage.clone() };
    let files = deployment_files(cli)?;
    let manifest = tverr_access::restore(&config, &a.dir, &files).await?;
    let engine = open(cli).await?;
    let details = serde_json::json!({
        "action": "restore", "source": a.dir.display().to_string(), "generation": manifest.generation, "created_at": manifest.created_at,
    });
    engine.log_event(RecordKind::Restore, &crate::operator(), Channel::Cli, details).await?;
    let verified = engine.audit().verify(None).await?;
    engine.audit().flush().await;
    if let Some(p) = verified.problem {
        return Err(AuditBroken(format!("after the restore: {p}")).into());
    }
    print_manifest(&manifest, a.json, &format!("restored {}", a.dir.display()))?;
    eprintln!("the access log verifies: {} entries", verified.entries);
    Ok(())
}

/// A whole number from the environment, or the default.
pub fn env_number(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(v) => v.parse().map_err(|_| anyhow!("{name}={v:?}: expected a positive whole number")),
        Err(_) => Ok(default),
    }
}

/// Where signed checkpoints are published outside the catalogue: `TVERR_AUDIT_WITNESS` (a file
/// path; `off` for none), by default `audit-witness.ndjson` in the data directory.
fn witness_path(cli: &Cli) -> Option<PathBuf> {
    match std::env::var("TVERR_AUDIT_WITNESS") {
        Ok(v) if v == "off" => None,
        Ok(v) if !v.is_empty() => Some(PathBuf::from(v)),
        _ => Some(cli.data.join("audit-witness.ndjson")),
    }
}

/// The access log over the store, with checkpoints every 1,000 entries or 60 seconds
/// (`TVERR_AUDIT_CHECKPOINT_EVERY`, `TVERR_AUDIT_CHECKPOINT_SECONDS`).
fn audit_config(cli: &Cli) -> Result<tverr_audit::AuditConfig> {
    let config = tverr_audit::AuditConfig {
        key_path: cli.audit_key.clone().unwrap_or_else(|| cli.data.join("audit-key.pk8")),
        subject_key_path: cli.subject_key.clone().unwrap_or_else(|| cli.data.join("subject-key")),
        checkpoint_every: env_number("TVERR_AUDIT_CHECKPOINT_EVERY", 1000)?.max(1) as i64,
        checkpoint_interval: std::time::Duration::from_secs(env_number("TVERR_AUDIT_CHECKPOINT_SECONDS", 60)?),
        witness_path: witness_path(cli),
    };
    Ok(config)
}

/// How many people of one dataset one access names before it counts as a bulk read
/// (`TVERR_AUDIT_NAMED_LIMIT`, default 10,000).
fn named_limit() -> Result<usize> {
    Ok(env_number("TVERR_AUDIT_NAMED_LIMIT", tverr_access::DEFAULT_NAMED_LIMIT as u64)? as usize)
}

/// The memory one query may use, all queries together may use, and an ingest's sort by place may
/// hold before it spills, in bytes (`TVERR_QUERY_MEMORY_MB`, default 1,024;
/// `TVERR_SERVER_MEMORY_MB`, default 4,096; `TVERR_INGEST_SORT_MEMORY_MB`, default 256).
fn memory_limits() -> Result<(usize, usize, usize)> {
    let mib = |name: &str, default: usize| -> Result<usize> {
        let n = env_number(name, (default >> 20) as u64)?;
        if n == 0 {
            bail!("{name}: at least 1 MiB");
        }
        Ok((n as usize).saturating_mul(1 << 20))
    };
    Ok((
        mib("TVERR_QUERY_MEMORY_MB", tverr_access::DEFAULT_QUERY_MEMORY)?,
        mib("TVERR_SERVER_MEMORY_MB", tverr_access::DEFAULT_SERVER_MEMORY)?,
        mib("TVERR_INGEST_SORT_MEMORY_MB", tverr_access::DEFAULT_SORT_MEMORY)?,
    ))
}

/// `tverr dataset category …`: every change and decision is in the access log before it is
/// made.
async fn category_command(engine: &Engine, c: DatasetCommand) -> Result<()> {
    let policy = engine.policy();
    let print = |change: &tverr_policy::CategoryChange| {
        println!("change {}: {}.{} {} → {}: {}", change.id, change.dataset, change.column, change.from, change.to, change.state);
    };
    match c {
        DatasetCommand::Show(a) => show(engine.catalog(), &a).await?,
        DatasetCommand::LegalBasis { dataset, basis } => {
            let r = dataset_ref(&dataset)?;
            let details = serde_json::json!({"dataset": r.to_string(), "legal_basis": basis});
            engine.log_event(RecordKind::DatasetChange, &crate::operator(), Channel::Cli, details).await?;
            engine.catalog().set_dataset_legal_basis(&r, basis.as_deref()).await?;
            match basis {
                Some(b) => println!("{r} is processed under {b}"),
                None => println!("{r} has no legal basis recorded"),
            }
        }
        DatasetCommand::Parents { dataset, child, parent } => {
            let r = dataset_ref(&dataset)?;
            let details = serde_json::json!({"dataset": r.to_string(), "child": child, "parent": parent});
            engine.log_event(RecordKind::GuardianshipRegister, &crate::operator(), Channel::Cli, details).await?;
            engine.catalog().set_guardianship_register(&r, &child, &parent, "operator").await?;
            println!("parents read their children's data through {r} ({parent} is the parent of {child})");
        }
        DatasetCommand::Category { dataset, column, category, actor } => {
            let r = dataset_ref(&dataset)?;
            let to = ColumnCategory::from_str(&category).map_err(|e| anyhow!("{category:?}: {e}"))?;
            let who = actor.principal(policy).await?;
            let details = serde_json::json!({"dataset": r.to_string(), "column": column, "to": to.as_str()});
            engine.log_event(RecordKind::CategoryChange, &who, Channel::Cli, details).await?;
            let change = policy.change_category(&who, &r, &column, to).await?;
            print(&change);
            if change.state == "requested" {
                eprintln!(
                    "this lowers protection: another steward of the department approves it with `tverr dataset approve-category {}`",
                    change.id
                );
            }
        }
        DatasetCommand::ApproveCategory { id, actor } => decide_category(engine, id, &actor, true).await?,
        DatasetCommand::DenyCategory { id, actor } => decide_category(engine, id, &actor, false).await?,
        DatasetCommand::CategoryChanges(f) => {
            let changes = policy.category_changes().await?;
            if f.json {
                println!("{}", serde_json::to_string_pretty(&changes)?);
            } else {
                for change in &changes {
                    print(change);
                }
            }
        }
    }
    Ok(())
}

async fn decide_category(engine: &Engine, id: i64, actor: &access::Actor, approve: bool) -> Result<()> {
    let policy = engine.policy();
    let who = actor.principal(policy).await?;
    let details = serde_json::json!({"change": id, "decision": if approve { "approve" } else { "deny" }});
    engine.log_event(RecordKind::CategoryChange, &who, Channel::Cli, details).await?;
    let change = policy.decide_category_change(&who, id, approve).await?;
    println!("change {}: {}.{} {} → {}: {}", change.id, change.dataset, change.column, change.from, change.to, change.state);
    Ok(())
}

/// `tverr protection …`: each change is in the access log before it is made, like every
/// change of what decisions read.
async fn protection_command(engine: &Engine, c: ProtectionCommand) -> Result<()> {
    let catalog = engine.catalog();
    match c {
        ProtectionCommand::Register { dataset, key, status } => {
            let r = dataset_ref(&dataset)?;
            let details = serde_json::json!({"dataset": r.to_string(), "key": key, "status": status});
            engine.log_event(RecordKind::ProtectionRegister, &crate::operator(), Channel::Cli, details).await?;
            let set = catalog.set_protection_register(&r, &key, &status, "operator").await?;
            println!("address protection is read from {} ({} by {})", set.dataset, set.status_column, set.key_column);
        }
        ProtectionCommand::Remove { dataset } => {
            let r = dataset_ref(&dataset)?;
            let details = serde_json::json!({"dataset": r.to_string()});
            engine.log_event(RecordKind::ProtectionRegisterRemoved, &crate::operator(), Channel::Cli, details).await?;
            if !catalog.remove_protection_register(&r).await? {
                bail!("{r} is not a register of address protection");
            }
            println!("address protection is no longer read from {r}");
        }
        ProtectionCommand::Link { dataset, column, to, target_column } => {
            let (r, target) = (dataset_ref(&dataset)?, dataset_ref(&to)?);
            let target_column = target_column.unwrap_or_else(|| column.clone());
            let details = serde_json::json!({"dataset": r.to_string(), "column": column, "target": target.to_string(), "target_column": target_column});
            engine.log_event(RecordKind::ProtectionLink, &crate::operator(), Channel::Cli, details).await?;
            let l = catalog.set_protection_link(&r, &column, &target, &target_column, "operator").await?;
            println!(
                "rows of {} take the protection of the rows of {} with the same {} ({})",
                l.dataset, l.target, l.column, l.target_column
            );
        }
        ProtectionCommand::Unlink { dataset, column } => {
            let r = dataset_ref(&dataset)?;
            engine
                .log_event(
                    RecordKind::ProtectionLinkRemoved,
                    &crate::operator(),
                    Channel::Cli,
                    serde_json::json!({"dataset": r.to_string(), "column": column}),
                )
                .await?;
            if !catalog.remove_protection_link(&r, &column).await? {
                bail!("{r} has no protection link on {column}");
            }
            println!("{r}.{column} carries no protection any more");
        }
        ProtectionCommand::List(f) => {
            let registers = catalog.protection_registers().await?;
            let links = catalog.protection_links().await?;
            if f.json {
                println!("{}", serde_json::to_string_pretty(&serde_json::json!({"registers": registers, "links": links}))?);
            } else {
                if registers.is_empty() {
                    println!("no register of address protection: each dataset's own {} column decides", tverr_policy::PROTECTION_COLUMN);
                }
                for r in registers {
                    println!("{}\tkey {}\tstatus {}\tset by {} at {}", r.dataset, r.key_column, r.status_column, r.set_by, r.set_at);
                }
                for l in links {
                    println!("{}.{}\tlinked to {}.{}\tset by {} at {}", l.dataset, l.column, l.target, l.target_column, l.set_by, l.set_at);
                }
            }
        }
    }
    Ok(())
}

/// Runs one command.
pub async fn run(cli: Cli) -> Result<()> {
    if let Command::Restore(a) = &cli.command {
        return restore(&cli, a).await;
    }
    let engine = open(&cli).await?;
    let result = dispatch(cli, &engine).await;
    // Records that gate nothing (completions, token uses) wait for the next group commit: write
    // them before the process ends.
    engine.audit().flush().await;
    result
}

async fn dispatch(cli: Cli, engine: &Engine) -> Result<()> {
    let catalog = engine.catalog();
    match cli.command {
        Command::Org(OrgCommand::Create { slug, name, orgnr, kommunenummer }) => {
            let details =
                serde_json::json!({"action": "create", "org": slug, "name": name, "orgnr": orgnr, "kommunenummer": kommunenummer});
            engine.log_event(RecordKind::OrganisationChange, &crate::operator(), Channel::Cli, details).await?;
            let org = catalog.create_org(&slug, &name, &orgnr, kommunenummer.as_deref()).await?;
            println!("created organisation {} ({}, orgnr {})", org.slug, org.name, org.orgnr);
        }
        Command::Org(OrgCommand::List(f)) => {
            let orgs = catalog.orgs().await?;
            if f.json {
                println!("{}", serde_json::to_string_pretty(&orgs)?);
            } else {
                for o in orgs {
                    println!("{:<16} {:<32} {} {}", o.slug, o.name, o.orgnr, o.kommunenummer.unwrap_or_default());
                }
            }
        }
        Command::Department(DepartmentCommand::Create { path, name }) => {
            let (org, slug) = path.split_once('/').ok_or_else(|| anyhow!("expected ORG/SLUG, e.g. hamar/oppvekst"))?;
            let details = serde_json::json!({"action": "create", "org": org, "department": slug, "name": name});
            engine.log_event(RecordKind::OrganisationChange, &crate::operator(), Channel::Cli, details).await?;
            let d = catalog.create_department(org, slug, &name).await?;
            println!("created department {}/{} ({})", d.org, d.slug, d.name);
        }
        Command::Department(DepartmentCommand::List { org, json }) => {
            let deps = catalog.departments(org.as_deref()).await?;
            if json.json {
                println!("{}", serde_json::to_string_pretty(&deps)?);
            } else {
                for d in deps {
                    println!("{:<32} {}", format!("{}/{}", d.org, d.slug), d.name);
                }
            }
        }
        Command::Ingest(args) => ingest(engine, args).await?,
        Command::Connector(c) => crate::connectors::run(engine, c).await?,
        Command::Subscription(c) => crate::subscriptions::run(engine, c).await?,
        Command::Datasets(f) => {
            let datasets = catalog.datasets().await?;
            if f.json {
                println!("{}", serde_json::to_string_pretty(&datasets)?);
            } else {
                println!("{:<36} {:<22} {:<16} TITLE", "DATASET", "CLASSIFICATION", "DEPARTMENT");
                for d in datasets {
                    println!("{:<36} {:<22} {:<16} {}", d.reference(), d.classification, d.department, d.title);
                }
            }
        }
        Command::Dataset(c) => category_command(engine, c).await?,
        Command::History(a) => history(catalog, &a).await?,
        Command::Export(a) => export(engine, a).await?,
        Command::Sql(a) => sql(engine, a).await?,
        Command::Lookup(a) => lookup(engine, a).await?,
        Command::Erase(a) => erase(engine, a).await?,
        Command::Audit(c) => audit_command(engine, c).await?,
        Command::Dcat(DcatCommand::Export { out, base_url }) => {
            let to_stdout = out.as_os_str() == "-";
            let format = if to_stdout {
                tverr_server::dcat::DcatFormat::Turtle
            } else {
                tverr_server::dcat::DcatFormat::for_file(&out.to_string_lossy())
                    .ok_or_else(|| anyhow!("--out {}: name it .ttl, .rdf or .jsonld", out.display()))?
            };
            if !(base_url.starts_with("http://") || base_url.starts_with("https://")) || base_url.contains(char::is_whitespace) {
                bail!("--base-url {base_url:?}: give an http:// or https:// address");
            }
            let bytes = tverr_server::dcat::export(engine, &base_url, format).await.map_err(|p| anyhow!("{}", p.detail))?;
            if to_stdout {
                std::io::Write::write_all(&mut std::io::stdout(), &bytes)?;
            } else {
                std::fs::write(&out, &bytes).with_context(|| format!("cannot write {}", out.display()))?;
                eprintln!("wrote {} ({} bytes)", out.display(), bytes.len());
            }
        }
        Command::Protection(c) => protection_command(engine, c).await?,
        Command::User(c) => access::user(engine, c).await?,
        Command::Token(c) => access::token(engine, c).await?,
        Command::LegalBasis(c) => access::legal_basis(engine, c).await?,
        Command::Purpose(c) => access::purpose(engine, c).await?,
        Command::Agreement(c) => access::agreement(engine, c).await?,
        Command::Demo(a) => {
            let config = tverr_demo::DemoConfig { persons: a.persons, seed: a.seed };
            let rows = tverr_demo::create(engine, crate::operator_key(), &config).await?;
            println!("created the demo municipality: {} datasets, {rows} rows", catalog.datasets().await?.len());
        }
        Command::Backup(ref a) => {
            let manifest = engine.backup(&crate::operator(), &a.dir, &deployment_files(&cli)?).await?;
            print_manifest(&manifest, a.json, &format!("backup written to {}", a.dir.display()))?;
        }
        Command::Restore(_) => unreachable!("a restore runs before the store is opened"),
        Command::Serve(a) => {
            if a.demo && catalog.orgs().await?.is_empty() {
                eprintln!("creating the demo municipality ({} persons)…", a.persons);
                let config = tverr_demo::DemoConfig { persons: a.persons, ..Default::default() };
                tverr_demo::create(engine, crate::operator_key(), &config).await?;
            }
            let indexed = engine.ensure_indexed().await?;
            if !indexed.is_empty() {
                eprintln!("indexed the subject keys of {}", indexed.join(", "));
            }
            // Writes a crash interrupted are finished in the background: one may wait for the
            // write lock of a dataset another node is writing.
            let recovering = engine.clone();
            let recovered = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let done = recovered.clone();
            tokio::spawn(async move {
                let outcome = recovering.recover_interrupted().await;
                done.store(true, std::sync::atomic::Ordering::Release);
                match outcome {
                    Ok(found) if !found.is_empty() => {
                        let names: Vec<String> = found.iter().map(ToString::to_string).collect();
                        tracing::warn!(datasets = %names.join(", "), "finished writes a crash had interrupted");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "cannot finish the writes a crash interrupted; the next write of each dataset does")
                    }
                }
            });
            let listener = tokio::net::TcpListener::bind(&a.listen).await.with_context(|| format!("cannot listen on {}", a.listen))?;
            eprintln!("tverr listening on http://{}", listener.local_addr()?);
            let limits = tverr_server::Limits {
                body_bytes: a.max_body_bytes,
                upload_bytes: a.max_upload_bytes,
                query_time: std::time::Duration::from_secs(a.query_seconds.max(1)),
                queries_per_principal: a.queries_per_principal.max(1),
                connections_per_client: a.max_connections_per_client.max(1),
                connections: a.max_connections.max(1),
                client_time: std::time::Duration::from_secs(a.client_seconds.max(1)),
            };
            let mut state = tverr_server::AppState::from_engine(engine.clone())
                .with_limits(limits)
                .with_public_url(a.public_url.clone())
                .with_recovery(recovered)
                .with_metrics_token(std::env::var("TVERR_METRICS_TOKEN").ok());
            if a.demo {
                // The demo has no ID-porten: its log-in page lets anyone act as a citizen.
                let key = tverr_policy::CitizenDemoKey::take().context("the demo's citizen log-in is taken once")?;
                state = state.with_citizen_demo_login(key);
            }
            if let Some(path) = &a.oidc {
                let config = tverr_server::OidcConfig::load(path).map_err(|e| anyhow!("--oidc: {e}"))?;
                eprintln!("accepting OIDC tokens from {} issuers", config.issuers.len());
                state = state.with_oidc(config);
            }
            if std::env::var("TVERR_CONNECTORS").as_deref() != Ok("off") {
                let tick = std::time::Duration::from_secs(env_number("TVERR_CONNECTOR_TICK_SECONDS", 10)?.max(1));
                tokio::spawn(run_connectors(engine.clone(), tick));
            }
            if std::env::var("TVERR_WEBHOOKS").as_deref() != Ok("off") {
                let tick = std::time::Duration::from_millis(env_number("TVERR_WEBHOOK_TICK_MS", 1000)?.max(50));
                tokio::spawn(deliver_events(engine.clone(), tick));
            }
            tverr_server::serve(listener, state).await?;
        }
    }
    Ok(())
}

/// Runs the connectors that are due, every `tick`, for as long as the server runs. Other nodes
/// on the same catalogue do the same; a lease in the catalogue gives each run to one of them.
async fn run_connectors(engine: Engine, tick: std::time::Duration) {
    loop {
        tokio::time::sleep(tick).await;
        if let Err(e) = engine.run_due_connectors().await {
            tracing::warn!(error = %e, "cannot run the connectors that are due");
        }
    }
}

/// Delivers the events of new versions for as long as the server runs: at once after a commit
/// in this process, and every `tick` for those of other processes and for retries.
async fn deliver_events(engine: Engine, tick: std::time::Duration) {
    loop {
        if let Err(e) = engine.deliver_due_events().await {
            tracing::warn!(error = %e, "cannot deliver the subscriptions' events");
        }
        engine.deliveries_wait(tick).await;
    }
}

async fn ingest(engine: &Engine, a: IngestArgs) -> Result<()> {
    let dataset = dataset_ref(&a.dataset)?;
    let size = std::fs::metadata(&a.file).with_context(|| format!("cannot read {}", a.file.display()))?.len();
    let settings = a.how.settings();
    let actor = a.actor.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "operator".into());
    let mut req = settings.request(dataset.clone(), a.file, actor).map_err(|e| match e {
        StoreError::Invalid { field, message } => anyhow!("--{field}: {message}"),
        other => other.into(),
    })?;
    let bar = progress_bar(size);
    req.options.progress = bar.clone().map(|b| Arc::new(move |n: u64| b.set_position(n)) as tverr_access::ingest::Progress);
    let result = engine.ingest(&crate::operator(), Channel::Cli, req).await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let outcome = result?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
        return Ok(());
    }
    let r = &outcome.report;
    let mut detail = vec![r.format.clone()];
    detail.extend(r.encoding.clone());
    if let Some(d) = &r.delimiter {
        detail.push(format!("delimiter {d}"));
    }
    detail.extend(r.sheet.clone().map(|s| format!("sheet {s}")));
    detail.extend(r.crs.clone());
    println!(
        "{dataset}: version {} ({}), {} rows from {} ({}){}",
        outcome.version,
        match (outcome.created, outcome.rows_removed) {
            (true, _) => "created".to_string(),
            (false, 0) => "appended".to_string(),
            (false, n) => format!("{n} rows removed"),
        },
        r.rows,
        r.file_name,
        detail.join(", "),
        if r.added_columns.is_empty() { String::new() } else { format!(", new columns: {}", r.added_columns.join(", ")) }
    );
    println!("sha256 {}", r.sha256);
    Ok(())
}

fn progress_bar(size: u64) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if size < 16 << 20 || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(size);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(bar)
}

async fn show(catalog: &Catalog, a: &DatasetArg) -> Result<()> {
    let r = dataset_ref(&a.dataset)?;
    let meta = catalog.dataset(&r).await?;
    let columns = catalog.columns(&r).await?;
    let versions = catalog.versions(&r).await?;
    if a.json {
        let v = serde_json::json!({ "dataset": meta, "columns": columns, "versions": versions });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("{}  {}", meta.reference(), meta.title);
    println!("  department      {}", meta.department);
    println!("  classification  {}", meta.classification);
    if !meta.description.is_empty() {
        println!("  description     {}", meta.description);
    }
    println!("  theme           {}", meta.theme.clone().unwrap_or_default());
    println!("  keywords        {}", meta.keywords.join(", "));
    println!("  licence         {}", meta.licence.clone().unwrap_or_default());
    println!("  frequency       {}", meta.update_frequency.clone().unwrap_or_default());
    println!("  created         {}", meta.created_at);
    println!("schema:");
    for c in &columns {
        let mut extra = Vec::new();
        if c.category != ColumnCategory::None {
            extra.push(format!("category {}", c.category));
        }
        if let Some(s) = c.subject_key {
            extra.push(format!("subject {s}"));
        }
        if let Some(crs) = &c.crs {
            extra.push(crs.clone());
        }
        println!("  {:<28} {:<10} {}", c.name, c.column_type, extra.join(", "));
    }
    println!("versions:");
    for v in &versions {
        println!(
            "  {:>4}  {}  {:<8} {} rows  {}",
            v.version,
            v.committed_at,
            v.mode,
            v.rows_written,
            v.source_name.clone().unwrap_or_default()
        );
    }
    Ok(())
}

async fn history(catalog: &Catalog, a: &DatasetArg) -> Result<()> {
    let r = dataset_ref(&a.dataset)?;
    catalog.dataset(&r).await?;
    let versions = catalog.versions(&r).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&versions)?);
        return Ok(());
    }
    println!("{:>7}  {:<24}  {:<12} {:<8} {:>10} {:>10}  SOURCE  SHA-256", "VERSION", "TIME", "ACTOR", "MODE", "ROWS", "REMOVED");
    for v in versions {
        println!(
            "{:>7}  {:<24}  {:<12} {:<8} {:>10} {:>10}  {}  {}",
            v.version,
            v.committed_at,
            v.actor,
            v.mode,
            v.rows_written,
            v.rows_removed,
            v.source_name.unwrap_or_default(),
            v.source_sha256.unwrap_or_default()
        );
    }
    Ok(())
}

async fn export(engine: &Engine, a: ExportArgs) -> Result<()> {
    let r = dataset_ref(&a.dataset)?;
    let format = ExportFormat::parse(&a.format)
        .ok_or_else(|| anyhow!("--format {:?}: expected csv, json, ndjson, geojson, xlsx or parquet", a.format))?;
    let csv = tverr_access::CsvOptions {
        delimiter: match a.delimiter.as_str() {
            "," | ";" | "|" | "\t" => a.delimiter.as_bytes()[0],
            "tab" => b'\t',
            other => bail!("--delimiter {other:?}: expected , ; | or tab"),
        },
        decimal_comma: match a.decimal.as_str() {
            "," => true,
            "." => false,
            other => bail!("--decimal {other:?}: expected , or ."),
        },
        bom: a.bom,
        raw: a.raw,
    };
    if csv != tverr_access::CsvOptions::default() && format != ExportFormat::Csv {
        bail!("--delimiter, --decimal, --bom and --raw apply to --format csv only");
    }
    let crs = match &a.crs {
        Some(c) => {
            Some(tverr_access::geo::Crs::parse(c).ok_or_else(|| anyhow!("--crs {c:?}: expected {}", tverr_access::geo::Crs::supported()))?)
        }
        None => None,
    };
    let who = a.actor.principal(engine.policy()).await?;
    let query = tverr_access::RowsQuery { filter: a.filter.clone(), version: a.version, crs, ..Default::default() };
    let released = engine.rows(&who, a.purpose.as_deref(), &r, &query, Channel::CliExport).await?;
    let stream = released.stream;
    let geometry = Engine::geometry_columns(&released.grants[0], crs);
    let options = ExportOptions { csv, ..ExportOptions::new(format, geometry) };
    let result: Result<u64> = async {
        Ok(match &a.out {
            Some(path) => {
                let tmp = path.with_extension("partial");
                let mut file =
                    std::io::BufWriter::new(std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?);
                let result = tverr_access::write_export(stream, &options, &mut file).await;
                drop(file);
                match result {
                    Ok(n) => {
                        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
                        n
                    }
                    Err(e) => {
                        let _ = std::fs::remove_file(&tmp);
                        return Err(e.into());
                    }
                }
            }
            None => {
                let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout());
                tverr_access::write_export(stream, &options, &mut out).await?
            }
        })
    }
    .await;
    let rows = result?;
    if let Some(path) = &a.out {
        eprintln!("{rows} rows written to {}", path.display());
    }
    Ok(())
}

fn subject_kind(kind: &str) -> Result<tverr_core::SubjectKind> {
    kind.parse().map_err(|e| anyhow!("{e}"))
}

async fn lookup(engine: &Engine, a: LookupArgs) -> Result<()> {
    let kind = subject_kind(&a.kind)?;
    let who = a.actor.principal(engine.policy()).await?;
    engine.ensure_indexed().await?;
    let found = engine.lookup(&who, a.purpose.as_deref(), kind, &a.id, Channel::CliLookup).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&found)?);
        return Ok(());
    }
    print_orgs(&found.organizations, "");
    if found.organizations.is_empty() {
        println!("Ingen treff du har tilgang til for formålet / nothing you may see for this purpose");
    }
    for r in &found.related {
        println!("\nRelatert / related: {} {} (via {}.{})", r.kind, r.id, r.via.dataset, r.via.column);
        print_orgs(&r.organizations, "  ");
    }
    Ok(())
}

fn print_orgs(orgs: &[tverr_access::LookupOrg], indent: &str) {
    for o in orgs {
        for d in &o.departments {
            for f in &d.datasets {
                println!("{indent}{} › {} › {} [{} v{}]", o.name, d.name, f.title, f.dataset, f.version);
                let basis = serde_json::to_value(&f.basis).unwrap_or_default();
                let legal = f.legal_basis.as_ref().map(|l| format!(" — {} (GDPR {})", l.hjemmel, l.gdpr_article)).unwrap_or_default();
                println!("{indent}  grunnlag / basis: {basis}{legal}");
                println!("{indent}  treff på / matched on: {}", f.matched_on.join(", "));
                for row in f.row_objects() {
                    let fields: Vec<String> =
                        row.iter().map(|(k, v)| format!("{k}={}", v.as_str().map_or_else(|| v.to_string(), str::to_string))).collect();
                    println!("{indent}  - {}", fields.join("; "));
                }
            }
        }
    }
}

async fn erase(engine: &Engine, a: EraseArgs) -> Result<()> {
    let kind = subject_kind(&a.kind)?;
    let mut refs = Vec::new();
    for d in &a.datasets {
        refs.push(d.parse::<DatasetRef>().map_err(|e| anyhow!("--dataset {d:?}: {e}"))?);
    }
    for r in refs {
        let outcome = engine.erase(&crate::operator(), Channel::Cli, &r, kind, &a.id).await?;
        match outcome.version {
            Some(v) => {
                let replaced = match outcome.replaced_rows_removed {
                    _ if outcome.earlier_versions_only => " (only earlier versions held them: their files are removed)".to_string(),
                    0 => String::new(),
                    n => format!(" (and {n} rows an upsert had replaced, removed from storage)"),
                };
                println!("{r}: {} rows erased in version {v}{replaced}; {} data files deleted", outcome.rows_removed, outcome.files_deleted)
            }
            None => println!("{r}: no rows about this subject"),
        }
    }
    Ok(())
}

async fn sql(engine: &Engine, a: SqlArgs) -> Result<()> {
    let who = a.actor.principal(engine.policy()).await?;
    let released = engine.sql(&who, a.purpose.as_deref(), &a.query, Channel::CliSql).await?;
    print_result(released.stream, &a.format).await.map(|_| ())
}

/// Prints a result as a table or in an export format; returns the number of rows.
async fn print_result(mut stream: tverr_access::SendableRecordBatchStream, format: &str) -> Result<u64> {
    match format {
        "table" => {
            let mut batches = Vec::new();
            let mut rows = 0usize;
            while let Some(b) = stream.next().await {
                let b = b.map_err(QueryError::from)?;
                rows += b.num_rows();
                if rows > 10_000 {
                    bail!("more than 10,000 rows; use --format csv or add LIMIT");
                }
                batches.push(b);
            }
            println!("{}", arrow::util::pretty::pretty_format_batches(&batches)?);
            eprintln!("{rows} rows");
            Ok(rows as u64)
        }
        f => {
            let format = match f {
                "csv" => ExportFormat::Csv,
                "json" => ExportFormat::Json,
                "ndjson" => ExportFormat::Ndjson,
                other => bail!("--format {other:?}: expected table, csv, json or ndjson"),
            };
            let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout());
            let rows = tverr_access::write_export(stream, &ExportOptions::new(format, Vec::new()), &mut out).await?;
            out.flush()?;
            Ok(rows)
        }
    }
}

/// The log's verification failed: exit 1 with the first problem.
#[derive(Debug, thiserror::Error)]
#[error("the access log does not verify: {0}")]
struct AuditBroken(String);

async fn audit_command(engine: &Engine, c: AuditCommand) -> Result<()> {
    match c {
        AuditCommand::Verify { checkpoint, json } => {
            let witness = match &checkpoint {
                Some(path) => {
                    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
                    Some(
                        serde_json::from_str::<tverr_audit::Checkpoint>(&text)
                            .with_context(|| format!("{} is not a checkpoint", path.display()))?,
                    )
                }
                None => None,
            };
            let v = engine.audit().verify(witness.as_ref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{} entries, {} signed checkpoints, head at entry {}", v.entries, v.checkpoints, v.head_seq);
            }
            if let Some(p) = v.problem {
                return Err(AuditBroken(p).into());
            }
            eprintln!("the access log verifies{}", if witness.is_some() { " against the given checkpoint" } else { "" });
        }
        AuditCommand::Search { user, dataset, org, from, to, subject } => {
            if let Some(pid) = &subject {
                tverr_core::Fodselsnummer::parse(pid).map_err(|e| QueryError::Invalid(format!("--subject: {e}")))?;
            }
            let subject_id = subject.as_deref().map(|p| engine.audit().subject_id(p));
            let details = serde_json::json!({"what": "search", "user": user, "dataset": dataset, "org": org, "from": from, "to": to, "subject": subject_id});
            engine.log_event(RecordKind::AuditRead, &crate::operator(), Channel::Cli, details).await?;
            let search = tverr_audit::Search { org, user, dataset, from, to, subject };
            for e in engine.audit().search(&search).await? {
                println!(
                    "{}",
                    serde_json::json!({"seq": e.seq, "at": e.at, "kind": e.kind, "record": serde_json::from_str::<serde_json::Value>(&e.payload)?})
                );
            }
        }
        AuditCommand::Prune { keep_days, before } => {
            let before = match (keep_days, before) {
                (Some(days), _) => {
                    (chrono::Utc::now() - chrono::Duration::days(i64::from(days))).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                }
                (None, Some(b)) => b,
                (None, None) => bail!("give --keep-days or --before"),
            };
            let removed = engine.audit().prune(&before).await?;
            eprintln!("removed {removed} entries checkpointed before {before}");
        }
        AuditCommand::Checkpoint { out } => {
            let c = engine.audit().checkpoint().await?;
            let text = serde_json::to_string_pretty(&c)?;
            match out {
                Some(path) => {
                    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
                    eprintln!("checkpoint of entry {} written to {}", c.seq, path.display());
                }
                None => println!("{text}"),
            }
        }
    }
    Ok(())
}
