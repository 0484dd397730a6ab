//! `tverr connector …`: datasets kept current from the systems that own their data.

use anyhow::{Context, Result, anyhow};
use clap::{Args, Subcommand};
use tverr_access::{Channel, ConnectorConfig, ConnectorInfo, ConnectorRun, Engine, FetchConfig, NewConnector, SourceOptions};

use crate::access::Actor;

#[derive(Debug, Subcommand)]
pub enum ConnectorCommand {
    /// Make a connector: a source, a schedule and how its data is ingested. It writes in the
    /// name of the user given with --as (a steward of the dataset's department).
    Create(Box<CreateArgs>),
    /// The connectors you may manage.
    List {
        #[command(flatten)]
        actor: Actor,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One connector (never its secrets).
    Show {
        /// Its name.
        name: String,
        #[command(flatten)]
        actor: Actor,
    },
    /// Run a connector now.
    Run {
        /// Its name.
        name: String,
        #[command(flatten)]
        actor: Actor,
    },
    /// A connector's last runs, newest first, with their errors.
    Runs {
        /// Its name.
        name: String,
        /// How many.
        #[arg(long, default_value_t = tverr_access::DEFAULT_RUNS_LISTED)]
        limit: i64,
        #[command(flatten)]
        actor: Actor,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a connector (its token is revoked).
    Delete {
        /// Its name.
        name: String,
        #[command(flatten)]
        actor: Actor,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Its name: lower case, digits and -.
    pub name: String,
    /// ORG/DATASET it writes.
    #[arg(long)]
    pub dataset: String,
    /// https://…, postgres://… or file:///dir/ (a password in the URL is sealed).
    #[arg(long)]
    pub source: String,
    /// Cron pattern in Norwegian time: minute hour day month weekday, e.g. "0 2 * * *".
    #[arg(long)]
    pub schedule: String,
    /// A SQL source's query.
    #[arg(long)]
    pub query: Option<String>,
    /// A SQL source's monotone column: each run reads only rows past the last run's highest
    /// value (needs --mode upsert).
    #[arg(long)]
    pub incremental: Option<String>,
    /// A JSON API's rows: a JSON pointer to the array ("" for a top-level array); pages are
    /// followed.
    #[arg(long)]
    pub pointer: Option<String>,
    /// A JSON pointer to the next page's URL in the body (Link headers are followed as well).
    #[arg(long)]
    pub next: Option<String>,
    /// A header sent to an HTTP source, "NAME: VALUE" (repeatable; the value is sealed). Read
    /// from the environment variable with --header-env NAME=VAR instead, to keep it out of the
    /// process list.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// A header whose value is in an environment variable: NAME=VAR (repeatable).
    #[arg(long = "header-env", value_name = "NAME=VAR")]
    pub header_env: Vec<String>,
    /// The source's password, from this environment variable (instead of in the URL).
    #[arg(long)]
    pub password_env: Option<String>,
    #[command(flatten)]
    pub how: crate::cli::IngestFlags,
    #[command(flatten)]
    pub actor: Actor,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// How this process runs connectors: `TVERR_CONNECTOR_KEY` (default DATA/connector-key),
/// `TVERR_CONNECTOR_ALLOW` (CIDRs beyond the public internet), `TVERR_DROP_ROOTS`
/// (directories drop folders may be in, separated by `:`), `TVERR_CONNECTOR_NODE`,
/// `TVERR_CONNECTOR_LEASE_SECONDS`, `TVERR_CONNECTOR_RETRY_SECONDS`, `TVERR_CONNECTOR_MAX_BYTES`.
pub fn config(data: &std::path::Path, key: Option<std::path::PathBuf>) -> Result<ConnectorConfig> {
    let addresses =
        tverr_access::AddressPolicy::parse(&std::env::var("TVERR_CONNECTOR_ALLOW").unwrap_or_default()).map_err(|e| anyhow!("{e}"))?;
    let drop_roots =
        std::env::var("TVERR_DROP_ROOTS").unwrap_or_default().split(':').filter(|p| !p.is_empty()).map(std::path::PathBuf::from).collect();
    let defaults = FetchConfig::default();
    let fetch = FetchConfig {
        addresses,
        drop_roots,
        max_bytes: crate::cli::env_number("TVERR_CONNECTOR_MAX_BYTES", defaults.max_bytes)?,
        ..defaults
    };
    let node = std::env::var("TVERR_CONNECTOR_NODE").unwrap_or_else(|_| {
        let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "tverr".into());
        format!("{host}-{}", std::process::id())
    });
    Ok(ConnectorConfig {
        key_path: key.unwrap_or_else(|| data.join("connector-key")),
        fetch,
        node,
        lease: std::time::Duration::from_secs(crate::cli::env_number("TVERR_CONNECTOR_LEASE_SECONDS", 120)?.max(2)),
        retry: std::time::Duration::from_secs(crate::cli::env_number("TVERR_CONNECTOR_RETRY_SECONDS", 30)?.max(1)),
    })
}

fn env_value(var: &str) -> Result<String> {
    std::env::var(var).with_context(|| format!("the environment variable {var} is not set"))
}

pub async fn run(engine: &Engine, command: ConnectorCommand) -> Result<()> {
    let policy = engine.policy();
    match command {
        ConnectorCommand::Create(a) => {
            let a = *a;
            let who = a.actor.principal(policy).await?;
            let mut headers = a.headers;
            for h in &a.header_env {
                let (name, var) = h.split_once('=').ok_or_else(|| anyhow!("--header-env {h:?}: expected NAME=VAR"))?;
                headers.push(format!("{name}: {}", env_value(var)?));
            }
            let mut source = a.source;
            if let Some(var) = &a.password_env {
                let mut url = url_with_password(&source, &env_value(var)?)?;
                std::mem::swap(&mut source, &mut url);
            }
            let new = NewConnector {
                name: a.name,
                dataset: a.dataset,
                source,
                schedule: a.schedule,
                options: SourceOptions {
                    query: a.query,
                    incremental: a.incremental,
                    pointer: a.pointer,
                    next: a.next,
                    ..Default::default()
                },
                headers,
                ingest: a.how.settings(),
            };
            let info = engine.create_connector(&who, Channel::Cli, new).await?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                println!("created connector {} → {} (next run {})", info.name, info.dataset, info.next_run_at);
            }
        }
        ConnectorCommand::List { actor, json } => {
            let list = engine.connectors(&actor.principal(policy).await?).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!("{:<24} {:<32} {:<9} {:<16} {:<10} NEXT RUN", "NAME", "DATASET", "KIND", "SCHEDULE", "LAST");
                for c in list {
                    let last = c.last_run.as_ref().map(|r| r.status.as_str()).unwrap_or("-");
                    println!("{:<24} {:<32} {:<9} {:<16} {:<10} {}", c.name, c.dataset, c.kind, c.schedule, last, c.next_run_at);
                }
            }
        }
        ConnectorCommand::Show { name, actor } => {
            let info = engine.connector(&actor.principal(policy).await?, &name).await?;
            show(&info);
        }
        ConnectorCommand::Run { name, actor } => {
            let runs = engine.run_connector(&actor.principal(policy).await?, &name).await?;
            for r in &runs {
                print_run(r);
            }
            if let Some(failed) = runs.iter().find(|r| r.status == "failed") {
                return Err(anyhow!("connector {name} failed: {}", failed.error.as_deref().unwrap_or("?")));
            }
        }
        ConnectorCommand::Runs { name, limit, actor, json } => {
            let runs = engine.connector_runs(&actor.principal(policy).await?, &name, limit).await?;
            print_each(&runs, json, print_run)?;
        }
        ConnectorCommand::Delete { name, actor } => {
            engine.delete_connector(&actor.principal(policy).await?, Channel::Cli, &name).await?;
            println!("deleted connector {name}");
        }
    }
    Ok(())
}

/// A list as JSON, or each item as `line` prints it.
pub(crate) fn print_each<T: serde::Serialize>(items: &[T], json: bool, line: impl Fn(&T)) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(items)?);
    } else {
        items.iter().for_each(line);
    }
    Ok(())
}

fn url_with_password(source: &str, password: &str) -> Result<String> {
    let mut url = url::Url::parse(source).map_err(|e| anyhow!("--source {source:?}: {e}"))?;
    url.set_password(Some(password)).map_err(|_| anyhow!("--source {source:?} takes no password"))?;
    Ok(url.to_string())
}

fn show(c: &ConnectorInfo) {
    println!("name            {}", c.name);
    println!("dataset         {}", c.dataset);
    println!("source          {} ({})", c.source, c.kind);
    println!("schedule        {}", c.schedule);
    println!("mode            {}{}", c.mode, c.key.as_ref().map(|k| format!(" by {k}")).unwrap_or_default());
    if let Some(q) = &c.query {
        println!("query           {q}");
    }
    if let Some(i) = &c.incremental {
        println!("incremental     {i}");
    }
    if let Some(p) = &c.pointer {
        println!("rows at         {p:?}");
    }
    if !c.headers.is_empty() {
        println!("headers         {} (values kept sealed)", c.headers.join(", "));
    }
    println!("password        {}", if c.has_password { "kept sealed" } else { "none" });
    println!("writes as       {}", c.owner);
    println!("created         {} by {}", c.created_at, c.created_by);
    println!("next run        {}{}", c.next_run_at, if c.running { " (running now)" } else { "" });
    println!("failures        {}", c.failures);
    if let Some(r) = &c.last_run {
        print!("last run        ");
        print_run(r);
    }
}

fn print_run(r: &ConnectorRun) {
    let version = r.version.map(|v| format!(" version {v}")).unwrap_or_default();
    let rows = r.rows.map(|n| format!(", {n} rows")).unwrap_or_default();
    let file = r.source_name.as_ref().map(|f| format!(" from {f}")).unwrap_or_default();
    println!("{} {} ({}){version}{rows}{file}", r.started_at, r.status, r.trigger);
    if let Some(e) = &r.error {
        for line in e.lines() {
            println!("    {line}");
        }
    }
}
