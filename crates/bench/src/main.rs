//! `tverr-bench`: what the access log costs (bench/audit/run.py builds and runs it).
//!
//! 1. The append rate with durable commits (SQLite `synchronous = FULL`, or PostgreSQL with
//!    `--postgres`), for 1, 64, 256 and 1,024 concurrent writers: group commit shares one commit
//!    among every entry waiting for it.
//! 2. Small audited reads of a confidential dataset over HTTP (one person from
//!    `hamar/innbyggere` by fødselsnummer, as the Folkeregister's case worker), against the same
//!    reads on a server whose log records nothing, in one run and interleaved: p50 and p90
//!    latency of one client, and the rate of eight concurrent clients.
//! 3. Where the difference goes: one intent record appended alone (back to back, after 10 ms
//!    idle, beside a busy runtime worker); the disk's own write-and-flush, back to back and after
//!    10 ms idle (the floor under any durable commit); the same read in process (planning, first
//!    batch); and a read of a dataset without a person key (no tap).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures::StreamExt;
use tverr_access::{Channel, RecordKind};
use tverr_audit::{Audit, AuditConfig};
use tverr_policy::Policy;
use tverr_store::{Store, StoreConfig};

#[derive(Debug, Parser)]
#[command(name = "tverr-bench", about = "What the access log costs")]
struct Args {
    /// Persons in the demo population.
    #[arg(long, default_value_t = 20_000)]
    persons: usize,
    /// Timed reads per mode and round, one client.
    #[arg(long, default_value_t = 200)]
    reads: usize,
    /// Rounds; the modes alternate within each.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Concurrent clients for the rate measurement.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Entries appended per append-rate measurement.
    #[arg(long, default_value_t = 50_000)]
    appends: usize,
    /// Also measure appends on this PostgreSQL database (postgres://…; its tables are created).
    #[arg(long)]
    postgres: Option<String>,
    /// Working directory (default: a new one under the system's temp directory, removed after).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

fn config(dir: &std::path::Path) -> AuditConfig {
    AuditConfig {
        key_path: dir.join("audit-key.pk8"),
        subject_key_path: dir.join("subject-key"),
        checkpoint_every: 1000,
        checkpoint_interval: Duration::from_secs(60),
        witness_path: Some(dir.join("audit-witness.ndjson")),
    }
}

/// A record the size and shape of a real intent record.
fn sample_record(i: usize) -> serde_json::Value {
    serde_json::json!({
        "channel": "http-sql",
        "principal": {"kind": "user", "username": "siri", "org": "hamar", "department": "folkeregister", "role": "employee"},
        "purpose": "folkeregisterforvaltning",
        "datasets": [{"dataset": "hamar/innbyggere", "version": 0, "basis": {"kind": "own-department", "purpose": "folkeregisterforvaltning"},
            "columns": [{"name": "fornavn", "mask": null}, {"name": "etternavn", "mask": null}, {"name": "adresse", "mask": null}],
            "row_filter": false, "special_category": false}],
        "query_sha256": format!("{i:064x}"),
    })
}

async fn append_rate(label: &str, catalog_url: &str, dir: &std::path::Path, appends: usize) -> Result<()> {
    for writers in [1usize, 64, 256, 1024] {
        let n = if writers == 1 { appends.min(2_000) } else { appends };
        let data = dir.join(format!("append-{label}-{writers}"));
        let url = if catalog_url.is_empty() { None } else { Some(catalog_url.to_string()) };
        let store = Store::open(&StoreConfig { data_dir: data.clone(), catalog_url: url, storage_url: None }).await?;
        // One key per catalogue: the PostgreSQL runs share a database.
        let audit = Audit::open(&store.raw_catalog(), config(&dir.join(format!("keys-{label}"))))?;
        // The callers' records exist before the clock starts: what is timed is the log's work
        // (canonical encoding, chaining, the durable commit), not building JSON values.
        let records: Vec<Vec<serde_json::Value>> = (0..writers).map(|w| (w..n).step_by(writers).map(sample_record).collect()).collect();
        let started = Instant::now();
        let tasks: Vec<_> = records
            .into_iter()
            .map(|records| {
                let audit = audit.clone();
                tokio::spawn(async move {
                    for record in &records {
                        audit.append(RecordKind::Access, record).await?;
                    }
                    // Handed back, so that freeing the callers' values is not timed either.
                    Ok::<_, tverr_audit::AuditError>(records)
                })
            })
            .collect();
        let mut done = Vec::with_capacity(tasks.len());
        for t in tasks {
            done.push(t.await??);
        }
        let secs = started.elapsed().as_secs_f64();
        drop(done);
        let v = audit.verify(None).await?;
        if v.problem.is_some() || v.entries < n as i64 {
            bail!("the log does not verify after the benchmark: {v:?}");
        }
        let commits: i64 = sqlx::query_scalar("SELECT count(DISTINCT at) FROM audit_log").fetch_one(store.raw_catalog().pool()).await?;
        println!(
            "append {label:<10} writers {writers:>3}: {n:>6} entries in {secs:.2} s = {:>8.0} entries/s (durable; {commits} commits in the log so far)",
            n as f64 / secs
        );
    }
    Ok(())
}

struct Target {
    name: &'static str,
    url: String,
}

async fn read_once(client: &reqwest::Client, url: &str, token: &str, body: &str) -> Result<Duration> {
    let started = Instant::now();
    let response = client
        .post(url)
        .header("Authorization", format!("Bearer {token}"))
        .header("Tverr-Purpose", "folkeregisterforvaltning")
        .body(body.to_string())
        .send()
        .await?;
    let status = response.status();
    let bytes = response.bytes().await?;
    if !status.is_success() || !bytes.windows(7).any(|w| w == b"fornavn") {
        bail!("read failed: {status} {}", String::from_utf8_lossy(&bytes));
    }
    Ok(started.elapsed())
}

/// What a durable commit costs this machine's disk at least: p50 of writing 16 KiB in place and
/// flushing it, back to back and after 10 ms without writes (ms).
fn disk_flush(dir: &std::path::Path, n: usize) -> Result<(f64, f64)> {
    use std::os::unix::fs::FileExt;
    let path = dir.join("flush-probe");
    let file = std::fs::OpenOptions::new().create(true).read(true).write(true).truncate(true).open(&path)?;
    let page = vec![7u8; 16 * 1024];
    for i in 0..64u64 {
        file.write_all_at(&page, i * page.len() as u64)?;
    }
    file.sync_all()?;
    let mut times = [Vec::new(), Vec::new()];
    for (idle, t) in times.iter_mut().enumerate() {
        for i in 0..n as u64 {
            if idle == 1 {
                std::thread::sleep(Duration::from_millis(10));
            }
            let started = Instant::now();
            file.write_all_at(&page, (i % 64) * page.len() as u64)?;
            file.sync_data()?;
            t.push(started.elapsed());
        }
        t.sort();
    }
    std::fs::remove_file(&path)?;
    Ok((percentile(&times[0], 0.5), percentile(&times[1], 0.5)))
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let own_dir = args.dir.is_none();
    let dir = args.dir.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("tverr-bench-{}", std::process::id())));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let result = run(&args, &dir).await;
    if own_dir {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn run(args: &Args, dir: &std::path::Path) -> Result<()> {
    println!("# the append rate with durable commits");
    append_rate("sqlite", "", dir, args.appends).await?;
    if let Some(pg) = &args.postgres {
        append_rate("postgresql", pg, dir, args.appends).await?;
    }

    println!("# small reads of a confidential dataset: audited vs. a log that records nothing");
    let data = dir.join("demo");
    let store = Store::open(&StoreConfig { data_dir: data.clone(), catalog_url: None, storage_url: None }).await?;
    let audited = Audit::open(&store.raw_catalog(), config(&data))?;
    let unaudited = Audit::unaudited_for_benchmarks(&store.raw_catalog(), config(&data))?;
    // The harness acts as the demo's users, as the command line's `--as` does.
    let operator = tverr_policy::OperatorKey::take().context("the operator key is taken once")?;
    if store.catalog.orgs().await?.is_empty() {
        let writer = tverr_access::Engine::new(store.clone(), audited.clone());
        tverr_demo::create(&writer, &operator, &tverr_demo::DemoConfig { persons: args.persons, ..Default::default() }).await?;
    }
    let policy = Policy::new(&store);
    let token = policy.create_token("siri", None).await?.secret;
    // One person to look up, found as the Folkeregister would.
    let engine = tverr_access::Engine::new(store.clone(), unaudited.clone());
    let siri = operator.act_as(policy.user("siri").await?);
    let mut found = engine
        .sql(&siri, Some("folkeregisterforvaltning"), "SELECT fodselsnummer FROM hamar.innbyggere LIMIT 1", Channel::Bench)
        .await?
        .stream;
    let batch = found.next().await.context("no person")??;
    let fnr = arrow::util::display::array_value_to_string(batch.column(0), 0)?;
    let body = serde_json::json!({"sql": format!(
        "SELECT fornavn, etternavn, adresse, postnummer FROM hamar.innbyggere WHERE fodselsnummer = '{fnr}'"
    )})
    .to_string();

    // The same read in process, without HTTP: planning (to the stream) and execution (the
    // first batch, which waits for the intent record when audited).
    let sql = format!("SELECT fornavn, etternavn, adresse, postnummer FROM hamar.innbyggere WHERE fodselsnummer = '{fnr}'");
    let engines = [("audited", tverr_access::Engine::new(store.clone(), audited.clone())), ("unaudited", engine.clone())];
    let mut timings: Vec<(Vec<Duration>, Vec<Duration>)> = vec![(Vec::new(), Vec::new()); 2];
    let mut firsts: Vec<Vec<Duration>> = vec![Vec::new(); 2];
    for round in 0..args.rounds {
        for m in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
            for _ in 0..args.reads {
                let started = Instant::now();
                let mut stream = engines[m].1.sql(&siri, Some("folkeregisterforvaltning"), &sql, Channel::Bench).await?.stream;
                let planned = started.elapsed();
                let mut first = None;
                while let Some(b) = stream.next().await {
                    b?;
                    first.get_or_insert(started.elapsed() - planned);
                }
                drop(stream);
                timings[m].0.push(planned);
                timings[m].1.push(started.elapsed() - planned);
                firsts[m].push(first.unwrap_or_default());
            }
        }
    }
    // One intent record appended alone, in three settings: back to back; after 10 ms in which
    // nothing was written (what a single client's read meets: its plan and execution take that
    // long); and while a runtime worker is busy (as under a query load).
    for setting in ["back to back", "after 10 ms idle", "beside a busy worker"] {
        let mut appends = Vec::new();
        for i in 0..args.reads {
            if setting == "after 10 ms idle" {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let busy = (setting == "beside a busy worker").then(|| {
                tokio::spawn(async {
                    let t = Instant::now();
                    while t.elapsed() < Duration::from_millis(2) {
                        std::hint::spin_loop();
                    }
                })
            });
            let started = Instant::now();
            let id = audited.subject_id(&fnr);
            let mut record = sample_record(i);
            record["subjects"] = serde_json::json!({"hamar/innbyggere": [&id]});
            audited.append_about(RecordKind::Access, &record, vec![id], None).await?;
            appends.push(started.elapsed());
            if let Some(busy) = busy {
                busy.await?;
            }
        }
        appends.sort();
        println!("one intent record with one person, {setting}: p50 {:.3} ms", percentile(&appends, 0.5));
    }
    let (warm, cold) = disk_flush(&data, args.reads)?;
    println!("the disk alone: 16 KiB written and flushed (fdatasync) back to back p50 {warm:.3} ms, after 10 ms idle p50 {cold:.3} ms");
    // A confidential dataset without a person key: no tap, the intent record alone.
    let lise = operator.act_as(policy.user("lise").await?);
    for (name, e) in &engines {
        let mut firsts = Vec::new();
        for _ in 0..args.reads {
            let started = Instant::now();
            let mut stream = e.sql(&lise, Some("vannforsyning"), "SELECT * FROM hias.vannmalere LIMIT 5", Channel::Bench).await?.stream;
            let planned = started.elapsed();
            let mut first = None;
            while let Some(b) = stream.next().await {
                b?;
                first.get_or_insert(started.elapsed() - planned);
            }
            firsts.push(first.unwrap_or_default());
        }
        firsts.sort();
        println!("engine {name:<10} no person key: first batch p50 {:.3} ms", percentile(&firsts, 0.5));
    }
    for (m, (name, _)) in engines.iter().enumerate() {
        let (plan, exec) = &mut timings[m];
        plan.sort();
        exec.sort();
        firsts[m].sort();
        println!(
            "engine {name:<10} plan p50 {:.3} ms, execute p50 {:.3} ms (first batch p50 {:.3} ms)",
            percentile(plan, 0.5),
            percentile(exec, 0.5),
            percentile(&firsts[m], 0.5)
        );
    }

    let mut targets = Vec::new();
    for (name, audit) in [("audited", audited.clone()), ("unaudited", unaudited)] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/api/v1/sql", listener.local_addr()?);
        // As many queries at once as the rate measurement's clients.
        let limits = tverr_server::Limits { queries_per_principal: args.concurrency.max(4), ..Default::default() };
        let state = tverr_server::AppState::from_engine(tverr_access::Engine::new(store.clone(), audit)).with_limits(limits);
        tokio::spawn(async move { tverr_server::serve(listener, state).await });
        targets.push(Target { name, url });
    }
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    for t in &targets {
        for _ in 0..30 {
            read_once(&client, &t.url, &token, &body).await?;
        }
    }
    let mut latencies: Vec<Vec<Duration>> = vec![Vec::new(); targets.len()];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    for round in 0..args.rounds {
        // Alternate which mode goes first, so drift on the machine hits both alike.
        let order: Vec<usize> = if round % 2 == 0 { vec![0, 1] } else { vec![1, 0] };
        // One client's latency: the two servers take turns read by read, so that what else this
        // shared machine is doing falls on both alike (in blocks of a hundred reads it moved the
        // ratio by ±20 % between runs).
        for i in 0..args.reads {
            for &m in &order {
                let m = if i % 2 == 0 { m } else { 1 - m };
                latencies[m].push(read_once(&client, &targets[m].url, &token, &body).await?);
            }
        }
        for &m in &order {
            let started = Instant::now();
            let per_client = args.reads;
            let tasks: Vec<_> = (0..args.concurrency)
                .map(|_| {
                    let (client, url, token, body) = (client.clone(), targets[m].url.clone(), token.clone(), body.clone());
                    tokio::spawn(async move {
                        for _ in 0..per_client {
                            read_once(&client, &url, &token, &body).await?;
                        }
                        Ok::<_, anyhow::Error>(())
                    })
                })
                .collect();
            for t in tasks {
                t.await??;
            }
            rates[m].push((per_client * args.concurrency) as f64 / started.elapsed().as_secs_f64());
        }
    }
    let mut p50 = Vec::new();
    for (m, t) in targets.iter().enumerate() {
        latencies[m].sort();
        rates[m].sort_by(f64::total_cmp);
        let rate = rates[m][rates[m].len() / 2];
        let l = &latencies[m];
        p50.push(percentile(l, 0.5));
        println!(
            "read {:<10} {} reads: p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms; {} clients: median {:.0} reads/s",
            t.name,
            l.len(),
            percentile(l, 0.5),
            percentile(l, 0.9),
            percentile(l, 0.99),
            args.concurrency,
            rate
        );
    }
    println!("audited / unaudited p50: {:.3} ({:+.1} %)", p50[0] / p50[1], (p50[0] / p50[1] - 1.0) * 100.0);
    audited.flush().await;
    let v = audited.verify(None).await?;
    println!("the access log after the benchmark: {} entries, problem: {:?}", v.entries, v.problem);
    Ok(())
}
