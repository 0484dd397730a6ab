//! `tverr subscription …`: webhooks that tell a consumer a dataset has a new version.

use anyhow::{Result, anyhow};
use clap::Subcommand;
use tverr_access::{Channel, Delivery, Engine, NewSubscription, SubscriptionConfig, SubscriptionInfo};

use crate::access::Actor;

#[derive(Debug, Subcommand)]
pub enum SubscriptionCommand {
    /// Register a webhook for the user given with --as, who must be able to read the dataset
    /// (for --purpose, unless it is open). Prints the subscription's id and its signing secret,
    /// which is not shown again.
    Create {
        /// ORG/DATASET.
        #[arg(long)]
        dataset: String,
        /// Where events are POSTed (http or https).
        #[arg(long)]
        url: String,
        /// The purpose the subscriber reads the dataset for.
        #[arg(long)]
        purpose: Option<String>,
        #[command(flatten)]
        actor: Actor,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The subscriptions you may see (your own; every one for the operator).
    List {
        /// Only those of ORG/DATASET.
        #[arg(long)]
        dataset: Option<String>,
        #[command(flatten)]
        actor: Actor,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A subscription's events, newest version first: delivered, pending (with the last
    /// error), failed or withheld.
    Deliveries {
        /// The subscription's id.
        id: String,
        /// How many.
        #[arg(long, default_value_t = tverr_access::DEFAULT_DELIVERIES_LISTED)]
        limit: i64,
        #[command(flatten)]
        actor: Actor,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a subscription (its events stop, its token is revoked).
    Delete {
        /// The subscription's id.
        id: String,
        #[command(flatten)]
        actor: Actor,
    },
}

/// How this process delivers events: `TVERR_WEBHOOK_ALLOW` (CIDRs beyond the public internet a
/// receiver may be at), `TVERR_WEBHOOK_RETRY_SECONDS` (the first retry's wait),
/// `TVERR_WEBHOOK_GIVE_UP_SECONDS` (the retry window, 24 h), `TVERR_WEBHOOK_TIMEOUT_SECONDS`,
/// `TVERR_PUBLIC_URL` (the change feed link's start); the node and key are the connectors'.
pub fn config(connectors: &tverr_access::ConnectorConfig) -> Result<SubscriptionConfig> {
    let addresses =
        tverr_access::AddressPolicy::parse_setting(&std::env::var("TVERR_WEBHOOK_ALLOW").unwrap_or_default(), "TVERR_WEBHOOK_ALLOW")
            .map_err(|e| anyhow!("{e}"))?;
    let defaults = SubscriptionConfig::default();
    let seconds = |var: &str, default: std::time::Duration| -> Result<std::time::Duration> {
        Ok(std::time::Duration::from_secs(crate::cli::env_number(var, default.as_secs())?.max(1)))
    };
    Ok(SubscriptionConfig {
        key_path: connectors.key_path.clone(),
        addresses,
        node: connectors.node.clone(),
        retry: seconds("TVERR_WEBHOOK_RETRY_SECONDS", defaults.retry)?,
        give_up: seconds("TVERR_WEBHOOK_GIVE_UP_SECONDS", defaults.give_up)?,
        timeout: seconds("TVERR_WEBHOOK_TIMEOUT_SECONDS", defaults.timeout)?,
        public_url: std::env::var("TVERR_PUBLIC_URL").ok().filter(|u| !u.is_empty()),
        ..defaults
    })
}

pub async fn run(engine: &Engine, command: SubscriptionCommand) -> Result<()> {
    let policy = engine.policy();
    match command {
        SubscriptionCommand::Create { dataset, url, purpose, actor, json } => {
            let who = actor.principal(policy).await?;
            let made = engine.create_subscription(&who, Channel::Cli, NewSubscription { dataset, url, purpose }).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&made)?);
            } else {
                let s = &made.subscription;
                println!("created subscription {} → {} for {}", s.id, s.url, s.dataset);
                println!("id      {}", s.id);
                println!("secret  {}", made.secret);
                println!("(the secret signs every event's Tverr-Signature; it is not shown again)");
            }
        }
        SubscriptionCommand::List { dataset, actor, json } => {
            let dataset = dataset.map(|d| d.parse::<tverr_core::DatasetRef>().map_err(|e| anyhow!("--dataset {d:?}: {e}"))).transpose()?;
            let list = engine.subscriptions(&actor.principal(policy).await?, dataset.as_ref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!("{:<36} {:<32} {:<16} {:<8} {:<10} URL", "ID", "DATASET", "SUBSCRIBER", "VERSION", "LAST");
                for s in &list {
                    print_subscription(s);
                }
            }
        }
        SubscriptionCommand::Deliveries { id, limit, actor, json } => {
            let list = engine.subscription_deliveries(&actor.principal(policy).await?, &id, limit).await?;
            crate::connectors::print_each(&list, json, print_delivery)?;
        }
        SubscriptionCommand::Delete { id, actor } => {
            engine.delete_subscription(&actor.principal(policy).await?, Channel::Cli, &id).await?;
            println!("deleted subscription {id}");
        }
    }
    Ok(())
}

fn print_subscription(s: &SubscriptionInfo) {
    let last = s.last_delivery.as_ref().map(|d| d.state.as_str()).unwrap_or("-");
    println!("{:<36} {:<32} {:<16} {:<8} {:<10} {}", s.id, s.dataset, s.subscriber, s.last_version, last, s.url);
}

fn print_delivery(d: &Delivery) {
    let status = d.last_status.map(|s| format!(" HTTP {s}")).unwrap_or_default();
    let when = match (&d.delivered_at, d.state.as_str()) {
        (Some(at), _) => format!(" at {at}"),
        (None, "pending") => format!(", next attempt {}", d.next_attempt_at),
        _ => String::new(),
    };
    println!("version {} {} after {} attempts{status}{when} (event {})", d.version, d.state, d.attempts, d.id);
    if let Some(e) = &d.last_error {
        println!("  {e}");
    }
}
