//! `tverr`: the command line. Parses arguments, opens the store and calls the library crates;
//! nothing here knows how data is stored or queried.

mod access;
mod cli;
mod connectors;
mod subscriptions;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc rather than the system allocator: look-ups and queries allocate and free many small
/// buffers per request, and glibc's malloc spent about 12 % of a look-up's CPU time on that
/// (README → Benchmarks → look-ups).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The operator capability, taken by `main` before anything else runs (so no library code can
/// take it) and used only by the command line's own commands.
static OPERATOR: std::sync::OnceLock<tverr_policy::OperatorKey> = std::sync::OnceLock::new();

/// The built-in operator of the command line.
fn operator() -> tverr_policy::Principal {
    operator_key().principal()
}

/// The operator capability itself: to act as a user (`--as`) or create the demo.
fn operator_key() -> &'static tverr_policy::OperatorKey {
    OPERATOR.get().expect("main takes the operator key first")
}

fn main() -> ExitCode {
    if let Some(key) = tverr_policy::OperatorKey::take() {
        let _ = OPERATOR.set(key);
    }
    let args = cli::Cli::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("TVERR_LOG").unwrap_or_else(|_| "warn,deltalake_core::writer::stats=error".into());
    // `TVERR_LOG_FORMAT=json`: one JSON object per line, with the request's id and route.
    if std::env::var("TVERR_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(cli::exit_code(&e))
        }
    }
}
