//! Commands of the policy layer: users, tokens, legal bases, purposes and agreements.

use std::io::Read;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use tverr_access::{Channel, Engine, RecordKind};
use tverr_policy::{Agreement, AgreementRequest, DatasetTerms, LegalBasis, Mask, Party, Policy, Principal, Purpose, Role};

/// Who acts: `--as USERNAME`, or the built-in operator.
#[derive(Debug, Args)]
pub struct Actor {
    /// Act as this local user (default: the built-in operator).
    #[arg(long = "as", value_name = "USERNAME")]
    pub username: Option<String>,
}

impl Actor {
    /// The principal this names.
    pub async fn principal(&self, policy: &Policy) -> Result<Principal> {
        match &self.username {
            None => Ok(crate::operator()),
            Some(u) => Ok(crate::operator_key().act_as(policy.user(u).await?)),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user: ORG/DEPARTMENT/USERNAME for stewards and employees, ORG/USERNAME for admins
    /// and auditors.
    Create {
        /// ORG/DEPARTMENT/USERNAME or ORG/USERNAME.
        path: String,
        /// admin | steward | employee | auditor.
        #[arg(long)]
        role: String,
        /// Read a password (at least 12 characters) from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List {
        /// Only this organisation.
        org: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token; it is printed once, alone on stdout.
    Create {
        /// The user the token acts as.
        #[arg(long, required_unless_present = "citizen", conflicts_with = "citizen")]
        user: Option<String>,
        /// Act as the citizen with this fødselsnummer, as an ID-porten login would (for the demo
        /// and tests: `/api/v1/me/…`).
        #[arg(long, value_name = "FNR")]
        citizen: Option<String>,
        /// Days until it expires (default: never).
        #[arg(long)]
        expires: Option<u32>,
    },
    /// Revoke a token by its id (or the token itself).
    Revoke {
        /// Token id or token.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum LegalBasisCommand {
    /// Register a legal basis: ORG/SLUG.
    Create {
        /// ORG/SLUG, e.g. hamar/pbl-21-4.
        path: String,
        /// GDPR article: 6(1)(a)–(f) or 9(2)(a)–(j).
        #[arg(long)]
        gdpr: String,
        /// The Norwegian hjemmel, e.g. "plan- og bygningsloven § 21-4".
        #[arg(long)]
        hjemmel: String,
        /// A lovdata.no URL.
        #[arg(long)]
        lovdata: Option<String>,
    },
    /// List an organisation's legal bases.
    List {
        /// Organisation.
        org: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PurposeCommand {
    /// Register a purpose: ORG/SLUG.
    Create {
        /// ORG/SLUG, e.g. hamar/byggesaksbehandling.
        path: String,
        /// Name.
        #[arg(long)]
        name: String,
        /// Description.
        #[arg(long, default_value = "")]
        description: String,
        /// The department whose own datasets may be read for it.
        #[arg(long)]
        department: Option<String>,
        /// Slug of its default legal basis in the same organisation.
        #[arg(long)]
        legal_basis: String,
    },
    /// List an organisation's purposes.
    List {
        /// Organisation.
        org: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AgreementCommand {
    /// Request an agreement (as the consumer's steward or admin).
    Request(RequestArgs),
    /// Approve a requested agreement (as the provider's steward).
    Approve(Transition),
    /// Deny a requested agreement (as the provider's steward).
    Deny(Transition),
    /// Revoke an agreement (as a steward of either side); it stops applying at once.
    Revoke(Transition),
    /// List agreements.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show an agreement with its history.
    Show {
        /// Agreement number.
        id: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct RequestArgs {
    /// Provider: ORG/DEPARTMENT.
    #[arg(long)]
    provider: String,
    /// Consumer: ORG/DEPARTMENT or ORG/DEPARTMENT/ROLE.
    #[arg(long)]
    consumer: String,
    /// A dataset shared (ORG/DATASET); repeat for several.
    #[arg(long = "dataset", required = true)]
    datasets: Vec<String>,
    /// Permitted columns, comma-separated (default: all but special-category columns). With
    /// several datasets, each dataset gets the listed columns it has.
    #[arg(long, value_delimiter = ',')]
    columns: Vec<String>,
    /// COLUMN=MASK: redact, partial, hmac, year_only or round:N; repeatable.
    #[arg(long = "mask")]
    masks: Vec<String>,
    /// Row filter: a SQL boolean expression over the provider's columns.
    #[arg(long)]
    filter: Option<String>,
    /// Purpose (slug in the consumer organisation); repeatable.
    #[arg(long = "purpose", required = true)]
    purposes: Vec<String>,
    /// Legal basis slug in the consumer organisation (default: the first purpose's).
    #[arg(long)]
    legal_basis: Option<String>,
    /// First day in force, YYYY-MM-DD (default today).
    #[arg(long)]
    valid_from: Option<chrono::NaiveDate>,
    /// Last day in force, YYYY-MM-DD.
    #[arg(long)]
    valid_to: Option<chrono::NaiveDate>,
    /// Release addresses of persons with `fortrolig` address protection.
    #[arg(long)]
    release_fortrolig: bool,
    /// Statistics only: grouped counts, sums and averages, groups smaller than this suppressed.
    #[arg(long)]
    min_group_size: Option<u32>,
    #[command(flatten)]
    actor: Actor,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct Transition {
    /// Agreement number.
    id: i64,
    /// Why.
    #[arg(long)]
    note: Option<String>,
    #[command(flatten)]
    actor: Actor,
}

/// Records an administrative change before it is made, as the operator on the command line: a
/// log that cannot be written refuses the change.
async fn log_change(engine: &Engine, kind: RecordKind, details: serde_json::Value) -> Result<()> {
    engine.log_event(kind, &crate::operator(), Channel::Cli, details).await?;
    Ok(())
}

pub async fn user(engine: &Engine, cmd: UserCommand) -> Result<()> {
    let policy = engine.policy();
    match cmd {
        UserCommand::Create { path, role, password_stdin } => {
            let role: Role = role.parse()?;
            let parts: Vec<&str> = path.split('/').collect();
            let (org, dept, name) = match parts.as_slice() {
                [org, name] => (*org, None, *name),
                [org, dept, name] => (*org, Some(*dept), *name),
                _ => bail!("{path:?}: expected ORG/DEPARTMENT/USERNAME or ORG/USERNAME"),
            };
            let password = if password_stdin {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s).context("cannot read the password from stdin")?;
                Some(s.trim_end_matches(['\n', '\r']).to_string())
            } else {
                None
            };
            let details = serde_json::json!({"action": "create", "user": name, "org": org, "department": dept, "role": role.to_string()});
            log_change(engine, RecordKind::UserChange, details).await?;
            let u = policy.create_user(org, dept, name, role, password.as_deref()).await?;
            eprintln!("created user {} ({} in {}{})", u.username, u.role, u.org, u.department.map(|d| format!("/{d}")).unwrap_or_default());
        }
        UserCommand::List { org, json } => {
            let users = policy.users(org.as_deref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&users)?);
            } else {
                for u in users {
                    let place = format!("{}{}", u.org, u.department.map(|d| format!("/{d}")).unwrap_or_default());
                    println!("{:<16} {:<10} {place}", u.username, u.role);
                }
            }
        }
    }
    Ok(())
}

pub async fn token(engine: &Engine, cmd: TokenCommand) -> Result<()> {
    let policy = engine.policy();
    match cmd {
        TokenCommand::Create { user, citizen, expires } => {
            // A citizen is named by the keyed digest of their number, as everywhere in the log.
            let owner = match (&user, &citizen) {
                (Some(user), _) => serde_json::json!({"user": user}),
                (None, Some(pid)) => serde_json::json!({"citizen": engine.audit().subject_id(pid)}),
                (None, None) => bail!("give --user or --citizen"),
            };
            log_change(engine, RecordKind::TokenChange, serde_json::json!({"action": "create", "for": owner, "expires_days": expires}))
                .await?;
            let (t, owner) = match (user, citizen) {
                (Some(user), _) => (policy.create_token(&user, expires).await?, user),
                (None, Some(pid)) => (policy.create_citizen_token(&pid, expires).await?, "a citizen".to_string()),
                (None, None) => bail!("give --user or --citizen"),
            };
            println!("{}", t.secret);
            eprintln!(
                "token {} for {owner}{}; it is shown only now",
                t.id,
                t.expires_at.map(|e| format!(", expires {e}")).unwrap_or_default()
            );
        }
        TokenCommand::Revoke { id } => {
            log_change(engine, RecordKind::TokenChange, serde_json::json!({"action": "revoke", "token": id})).await?;
            policy.revoke_token(&id).await?;
            eprintln!("revoked");
        }
    }
    Ok(())
}

fn org_slug(path: &str) -> Result<(&str, &str)> {
    path.split_once('/').ok_or_else(|| anyhow!("{path:?}: expected ORG/SLUG"))
}

pub async fn legal_basis(engine: &Engine, cmd: LegalBasisCommand) -> Result<()> {
    let policy = engine.policy();
    match cmd {
        LegalBasisCommand::Create { path, gdpr, hjemmel, lovdata } => {
            let (org, slug) = org_slug(&path)?;
            let b = LegalBasis { org: org.into(), slug: slug.into(), gdpr_article: gdpr, hjemmel, lovdata_url: lovdata };
            log_change(engine, RecordKind::LegalBasisChange, serde_json::json!({"action": "create", "legal_basis": b})).await?;
            policy.create_legal_basis(&b).await?;
            eprintln!("registered legal basis {org}/{slug}: GDPR art. {}, {}", b.gdpr_article, b.hjemmel);
        }
        LegalBasisCommand::List { org, json } => {
            let list = policy.legal_bases(&org).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for b in list {
                    println!("{:<28} art. {:<9} {}", b.slug, b.gdpr_article, b.hjemmel);
                }
            }
        }
    }
    Ok(())
}

pub async fn purpose(engine: &Engine, cmd: PurposeCommand) -> Result<()> {
    let policy = engine.policy();
    match cmd {
        PurposeCommand::Create { path, name, description, department, legal_basis } => {
            let (org, slug) = org_slug(&path)?;
            let p = Purpose { org: org.into(), slug: slug.into(), department, name, description, legal_basis };
            log_change(engine, RecordKind::PurposeChange, serde_json::json!({"action": "create", "purpose": p})).await?;
            policy.create_purpose(&p).await?;
            eprintln!("registered purpose {org}/{slug}");
        }
        PurposeCommand::List { org, json } => {
            let list = policy.purposes(&org).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for p in list {
                    println!("{:<28} {:<16} {:<20} {}", p.slug, p.department.unwrap_or_default(), p.legal_basis, p.name);
                }
            }
        }
    }
    Ok(())
}

pub async fn agreement(engine: &Engine, cmd: AgreementCommand) -> Result<()> {
    let policy = engine.policy();
    match cmd {
        AgreementCommand::Request(a) => {
            let actor = a.actor.principal(policy).await?;
            let mut masks = std::collections::BTreeMap::new();
            for m in &a.masks {
                let (col, mask) = m.split_once('=').ok_or_else(|| anyhow!("--mask {m:?}: expected COLUMN=MASK"))?;
                masks.insert(col.trim().to_string(), mask.parse::<Mask>()?);
            }
            let mut datasets = Vec::new();
            for d in &a.datasets {
                let r: tverr_core::DatasetRef = d.parse()?;
                let have: Vec<String> = policy.catalog().columns(&r).await?.into_iter().map(|c| c.name).collect();
                let pick = |names: Vec<String>| -> Vec<String> {
                    if a.datasets.len() == 1 { names } else { names.into_iter().filter(|n| have.contains(n)).collect() }
                };
                let columns = pick(a.columns.clone());
                let masks = if a.datasets.len() == 1 {
                    masks.clone()
                } else {
                    masks.iter().filter(|(c, _)| have.contains(c)).map(|(c, m)| (c.clone(), *m)).collect()
                };
                datasets.push(DatasetTerms {
                    dataset: d.clone(),
                    columns,
                    masks,
                    row_filter: a.filter.clone(),
                    min_group_size: a.min_group_size,
                });
            }
            let req = AgreementRequest {
                provider: a.provider.parse::<Party>()?,
                consumer: a.consumer.parse::<Party>()?,
                datasets,
                purposes: a.purposes,
                legal_basis: a.legal_basis,
                valid_from: a.valid_from,
                valid_to: a.valid_to,
                release_fortrolig: a.release_fortrolig,
            };
            Policy::may(&actor, tverr_policy::Action::RequestAgreement(&req.consumer))?;
            engine.check_terms(&req.datasets).await?;
            let datasets = tverr_access::datasets_field(req.datasets.iter().map(|d| d.dataset.as_str()));
            let intent = serde_json::json!({"action": "request", "datasets": datasets});
            let ag = logged_change(engine, &actor, intent, None, policy.request_agreement(&actor, req)).await?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&ag)?);
            } else {
                println!("{}", ag.id);
                eprintln!("agreement {} requested: {} → {}; the provider's steward approves it", ag.id, ag.provider, ag.consumer);
            }
        }
        AgreementCommand::Approve(t) => {
            let actor = t.actor.principal(policy).await?;
            let (intent, note) = transition_intent(policy, "approve", &t).await?;
            let a = logged_change(engine, &actor, intent, note, policy.approve(&actor, t.id, t.note.as_deref())).await?;
            eprintln!("agreement {} is {}", a.id, a.state);
        }
        AgreementCommand::Deny(t) => {
            let actor = t.actor.principal(policy).await?;
            let (intent, note) = transition_intent(policy, "deny", &t).await?;
            let a = logged_change(engine, &actor, intent, note, policy.deny(&actor, t.id, t.note.as_deref())).await?;
            eprintln!("agreement {} is {}", a.id, a.state);
        }
        AgreementCommand::Revoke(t) => {
            let actor = t.actor.principal(policy).await?;
            let (intent, note) = transition_intent(policy, "revoke", &t).await?;
            let a = logged_change(engine, &actor, intent, note, policy.revoke(&actor, t.id, t.note.as_deref())).await?;
            eprintln!("agreement {} is {}", a.id, a.state);
        }
        AgreementCommand::List { json } => {
            let list = policy.agreements().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!("{:<4} {:<10} {:<24} {:<28} {:<24} VALID", "ID", "STATE", "PROVIDER", "CONSUMER", "PURPOSES");
                for a in list {
                    let datasets: Vec<&str> = a.terms.datasets.iter().map(|d| d.dataset.as_str()).collect();
                    println!(
                        "{:<4} {:<10} {:<24} {:<28} {:<24} {}..{}  {}",
                        a.id,
                        a.state,
                        a.provider.to_string(),
                        a.consumer.to_string(),
                        a.terms.purposes.join(","),
                        a.terms.valid_from,
                        a.terms.valid_to.map(|d| d.to_string()).unwrap_or_default(),
                        datasets.join(" ")
                    );
                }
            }
        }
        AgreementCommand::Show { id, json } => {
            let a = policy.agreement(id).await?;
            let events = policy.agreement_events(id).await?;
            if json {
                let mut v = serde_json::to_value(&a)?;
                v["events"] = serde_json::to_value(&events)?;
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("agreement {}: {}", a.id, a.state);
                println!("provider:     {}", a.provider);
                println!("consumer:     {}", a.consumer);
                println!("purposes:     {}", a.terms.purposes.join(", "));
                let b = &a.terms.legal_basis;
                println!(
                    "legal basis:  GDPR art. {}; {}{}",
                    b.gdpr_article,
                    b.hjemmel,
                    b.lovdata_url.as_ref().map(|u| format!(" ({u})")).unwrap_or_default()
                );
                println!(
                    "valid:        {} to {}",
                    a.terms.valid_from,
                    a.terms.valid_to.map(|d| d.to_string()).unwrap_or_else(|| "until revoked".into())
                );
                println!("fortrolig:    {}", if a.terms.release_fortrolig { "released" } else { "withheld" });
                for d in &a.terms.datasets {
                    println!("dataset:      {}", d.dataset);
                    let cols = if d.columns.is_empty() { "all but special-category".to_string() } else { d.columns.join(", ") };
                    println!("  columns:    {cols}");
                    for (c, m) in &d.masks {
                        println!("  mask:       {c} = {m}");
                    }
                    if let Some(f) = &d.row_filter {
                        println!("  rows:       {f}");
                    }
                    if let Some(k) = d.min_group_size {
                        println!("  statistics: only, groups of at least {k}");
                    }
                }
                println!("history:");
                for e in events {
                    println!("  {} {:<10} by {}{}", e.at, e.state, e.actor, e.note.map(|n| format!(": {n}")).unwrap_or_default());
                }
            }
        }
    }
    Ok(())
}

/// What an approve, deny or revoke is about to change, for its intent record; and its note.
async fn transition_intent(policy: &Policy, action: &str, t: &Transition) -> Result<(serde_json::Value, Option<serde_json::Value>)> {
    let before = policy.agreement(t.id).await?;
    let datasets = tverr_access::datasets_field(before.terms.datasets.iter().map(|d| d.dataset.as_str()));
    let intent = serde_json::json!({"action": action, "agreement": t.id, "revision": before.revision, "datasets": datasets});
    Ok((intent, Some(serde_json::json!(t.note))))
}

/// Records an agreement change before it is made (a log that cannot be written refuses it),
/// makes it, and records the agreement's new state with the same datasets.
async fn logged_change(
    engine: &Engine,
    actor: &Principal,
    intent: serde_json::Value,
    note: Option<serde_json::Value>,
    change: impl std::future::Future<Output = Result<Agreement, tverr_policy::PolicyError>>,
) -> Result<Agreement> {
    let datasets = intent["datasets"].clone();
    engine.log_event(RecordKind::AgreementIntent, actor, Channel::Cli, intent).await?;
    let a = change.await?;
    let mut record = serde_json::json!({"agreement": a.id, "state": a.state, "revision": a.revision, "datasets": datasets});
    if let Some(note) = note {
        record["note"] = note;
    }
    engine.log_event(RecordKind::Agreement, actor, Channel::Cli, record).await?;
    Ok(a)
}
