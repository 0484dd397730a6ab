//! PostgreSQL sources: a query, read in one read-only, repeatable-read transaction with
//! `COPY … TO STDOUT` as CSV (what `psql \copy` reads), in full or past the incremental
//! column's high-water mark. The query is prepared on its own first, so it is one statement;
//! the transaction is read-only, so the connector never writes to the source.

use futures::StreamExt;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Column, Connection, Executor, Row, TypeInfo};

use crate::{ConnectError, FetchConfig, Fetched, Secrets, SourceOptions, SourceState, Staging};

/// Column types an incremental read may use: ordered, and written by PostgreSQL as text that
/// casts back to the same value.
const INCREMENTAL_TYPES: &[&str] =
    &["INT2", "INT4", "INT8", "NUMERIC", "DATE", "TIMESTAMP", "TIMESTAMPTZ", "TEXT", "VARCHAR", "BPCHAR", "FLOAT8", "FLOAT4"];

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn sql_error(what: &str, e: sqlx::Error) -> ConnectError {
    match e {
        sqlx::Error::Database(d) => {
            let position = d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().and_then(|p| match p.position() {
                Some(sqlx::postgres::PgErrorPosition::Original(n)) => Some(n),
                _ => None,
            });
            match position {
                Some(n) => ConnectError::Source(format!("{what}: {} (at character {n} of the query)", d.message())),
                None => ConnectError::Source(format!("{what}: {}", d.message())),
            }
        }
        other => ConnectError::Source(format!("{what}: {other}")),
    }
}

async fn connect(config: &FetchConfig, url: &url::Url, secrets: &Secrets) -> Result<PgConnection, ConnectError> {
    let host = url.host_str().ok_or_else(|| ConnectError::invalid("source", "the URL names no host"))?;
    let port = url.port().unwrap_or(5432);
    let addr = config.addresses.resolve(host, port).await?;
    // Built from the URL's parts, never by parsing the URL as a whole: a parameter cannot name
    // another host or a socket (`Source::parse` refuses every parameter but sslmode).
    let mut options =
        PgConnectOptions::new_without_pgpass().host(&addr.ip().to_string()).port(addr.port()).application_name("tverr-connector");
    if !url.username().is_empty() {
        options = options.username(&crate::percent_decode(url.username()));
    }
    let database = crate::percent_decode(url.path().trim_start_matches('/'));
    if !database.is_empty() {
        options = options.database(&database);
    }
    if let Some((_, mode)) = url.query_pairs().find(|(k, _)| k == "sslmode") {
        let mode = mode.parse().map_err(|_| ConnectError::invalid("source", format!("sslmode {mode:?} is not a mode")))?;
        options = options.ssl_mode(mode);
    }
    if let Some(p) = &secrets.password {
        options = options.password(p);
    }
    crate::connect_within(PgConnection::connect_with(&options), host, port, sql_error).await
}

pub(crate) async fn fetch(
    config: &FetchConfig,
    url: &url::Url,
    options: &SourceOptions,
    secrets: &Secrets,
    state: &SourceState,
) -> Result<Fetched, ConnectError> {
    let query = options.query.as_deref().map(str::trim).unwrap_or_default().trim_end_matches(';').trim().to_string();
    let mut conn = connect(config, url, secrets).await?;
    let run = async {
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await.map_err(|e| sql_error("cannot begin", e))?;
        conn.execute(format!("SET LOCAL statement_timeout = {}", config.timeout.as_millis()).as_str())
            .await
            .map_err(|e| sql_error("cannot set a time limit", e))?;
        conn.execute("SET LOCAL standard_conforming_strings = on").await.map_err(|e| sql_error("cannot set the string syntax", e))?;
        // One statement with balanced brackets, or an error here: only then is it wrapped.
        let described = conn.describe(query.as_str()).await.map_err(|e| sql_error("the query", e))?;
        let (select, next_state) = match &options.incremental {
            None => (query.clone(), None),
            Some(column) => {
                let Some(col) = described.columns().iter().find(|c| c.name() == column) else {
                    return Err(ConnectError::invalid("incremental", format!("the query has no column {column:?}")));
                };
                let ty = col.type_info().name().to_ascii_uppercase();
                if !INCREMENTAL_TYPES.contains(&ty.as_str()) {
                    return Err(ConnectError::invalid(
                        "incremental",
                        format!("column {column:?} is {ty}; an incremental column is a number, date, time or text"),
                    ));
                }
                let c = format!("q.{}", quote_ident(column));
                let past = match &state.watermark {
                    Some(w) => format!("{c} > CAST({} AS {ty})", quote_literal(w)),
                    None => "TRUE".to_string(),
                };
                let high: Option<String> = conn
                    .fetch_one(format!("SELECT max({c})::text AS high FROM ({query}) AS q WHERE {past}").as_str())
                    .await
                    .map_err(|e| sql_error("the query", e))?
                    .try_get("high")
                    .map_err(|e| sql_error("the query", e))?;
                let Some(high) = high else { return Ok(None) };
                let select =
                    format!("SELECT q.* FROM ({query}) AS q WHERE {past} AND {c} <= CAST({} AS {ty}) ORDER BY {c}", quote_literal(&high));
                (select, Some(high))
            }
        };
        let db: String = url.path().trim_start_matches('/').chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(40).collect();
        let name = format!("{}.csv", if db.is_empty() { "sql" } else { db.as_str() });
        let mut staging = Staging::create(name, config.max_bytes).await?;
        let mut copy = conn
            .copy_out_raw(&format!("COPY ({select}) TO STDOUT WITH (FORMAT csv, HEADER true)"))
            .await
            .map_err(|e| sql_error("the query", e))?;
        while let Some(chunk) = copy.next().await {
            let chunk = chunk.map_err(|e| sql_error("reading the rows", e))?;
            staging.write(&chunk).await?;
        }
        drop(copy);
        // A full pull is unchanged when its bytes are; an incremental read found new rows.
        let compare = next_state.is_none();
        let new_state = SourceState { watermark: next_state.or(state.watermark.clone()), ..SourceState::default() };
        let delivery = staging.finish(new_state, state, compare).await?;
        Ok(Some(delivery))
    };
    let result = run.await;
    let _ = conn.execute("ROLLBACK").await;
    let _ = conn.close().await;
    match result? {
        None => Ok(Fetched::Unchanged),
        Some(d) => Ok(Fetched::Deliveries(vec![d])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_are_quoted() {
        assert_eq!(quote_ident(r#"endret"; DROP"#), r#""endret""; DROP""#);
        assert_eq!(quote_literal("2026-01-01' OR '1'='1"), "'2026-01-01'' OR ''1''=''1'");
    }
}
