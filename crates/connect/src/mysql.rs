//! MySQL and MariaDB sources: a query, read in one read-only transaction with a consistent
//! snapshot, in full or past the incremental column's high-water mark, written as CSV. The
//! query is prepared on its own first, so it is one statement, and it must be a `SELECT` (or
//! `WITH … SELECT`); every statement Tverr sends is prepared with its values bound, never
//! spliced in, and the transaction is read-only, so the connector never writes to the source.
//! Give the connector a user with `SELECT` on the view and nothing else.

use futures::TryStreamExt;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{Column, Connection, Executor, Row, TypeInfo};

use crate::{ConnectError, FetchConfig, Fetched, Secrets, SourceOptions, SourceState, Staging};

/// An incremental column's type → what a bound value is cast to before comparing: ordered
/// types only.
fn incremental_cast(type_name: &str) -> Option<&'static str> {
    let t = type_name.to_ascii_uppercase();
    let unsigned = t.contains("UNSIGNED");
    Some(match t.split_whitespace().next().unwrap_or_default() {
        "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "INTEGER" | "BIGINT" if unsigned => "UNSIGNED",
        "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "INTEGER" | "BIGINT" => "SIGNED",
        "DECIMAL" | "NUMERIC" => "DECIMAL(65,30)",
        "DOUBLE" | "FLOAT" | "REAL" => "DOUBLE",
        "DATE" => "DATE",
        "DATETIME" | "TIMESTAMP" => "DATETIME(6)",
        "VARCHAR" | "CHAR" | "TEXT" | "TINYTEXT" | "MEDIUMTEXT" | "LONGTEXT" => "CHAR",
        _ => return None,
    })
}

/// A MySQL identifier, quoted.
fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn sql_error(what: &str, e: sqlx::Error) -> ConnectError {
    match e {
        sqlx::Error::Database(d) => ConnectError::Source(format!("{what}: {}", d.message())),
        other => ConnectError::Source(format!("{what}: {other}")),
    }
}

/// Whether the query reads: it starts (after comments and brackets) with `SELECT` or `WITH`.
fn is_select(query: &str) -> bool {
    let mut rest = query.trim_start();
    loop {
        if let Some(r) = rest.strip_prefix('(') {
            rest = r.trim_start();
        } else if let Some(r) = rest.strip_prefix("/*") {
            // An executable comment (`/*! … */`) is code to MySQL: it is not skipped here.
            if r.starts_with('!') || r.starts_with('M') {
                return false;
            }
            match r.find("*/") {
                Some(end) => rest = r[end + 2..].trim_start(),
                None => return false,
            }
        } else if rest.starts_with("-- ") || rest.starts_with('#') {
            match rest.find('\n') {
                Some(end) => rest = rest[end + 1..].trim_start(),
                None => return false,
            }
        } else {
            break;
        }
    }
    let word: String = rest.chars().take_while(|c| c.is_ascii_alphabetic()).collect::<String>().to_ascii_uppercase();
    if !matches!(word.as_str(), "SELECT" | "WITH") {
        return false;
    }
    // Anywhere in it: an executable comment is code, and a locking read would hold the source
    // system's writes for as long as the run lasts.
    let upper: String = query.to_ascii_uppercase().split_whitespace().collect::<Vec<_>>().join(" ");
    !(upper.contains("/*!")
        || upper.contains("/*M!")
        || upper.contains("FOR UPDATE")
        || upper.contains("FOR SHARE")
        || upper.contains("LOCK IN SHARE MODE"))
}

async fn connect(config: &FetchConfig, url: &url::Url, secrets: &Secrets) -> Result<MySqlConnection, ConnectError> {
    let host = url.host_str().ok_or_else(|| ConnectError::invalid("source", "the URL names no host"))?;
    let port = url.port().unwrap_or(3306);
    let addr = config.addresses.resolve(host, port).await?;
    // Built from the URL's parts: no parameter can name a socket or another host.
    let mut options = MySqlConnectOptions::new().host(&addr.ip().to_string()).port(addr.port()).charset("utf8mb4");
    if !url.username().is_empty() {
        options = options.username(&crate::percent_decode(url.username()));
    }
    let database = crate::percent_decode(url.path().trim_start_matches('/'));
    if !database.is_empty() {
        options = options.database(&database);
    }
    if let Some((_, mode)) = url.query_pairs().find(|(k, _)| k == "ssl-mode" || k == "sslmode") {
        let mode = mode.parse().map_err(|_| ConnectError::invalid("source", format!("ssl-mode {mode:?} is not a mode")))?;
        options = options.ssl_mode(mode);
    }
    if let Some(p) = &secrets.password {
        options = options.password(p);
    }
    crate::connect_within(MySqlConnection::connect_with(&options), host, port, sql_error).await
}

pub(crate) async fn fetch(
    config: &FetchConfig,
    url: &url::Url,
    options: &SourceOptions,
    secrets: &Secrets,
    state: &SourceState,
) -> Result<Fetched, ConnectError> {
    let query = options.query.as_deref().map(str::trim).unwrap_or_default().trim_end_matches(';').trim().to_string();
    if !is_select(&query) {
        return Err(ConnectError::invalid(
            "query",
            "a MySQL or MariaDB source reads with one SELECT (or WITH … SELECT), without executable comments or locking reads",
        ));
    }
    let mut conn = connect(config, url, secrets).await?;
    let run = async {
        // A time limit on each statement: MariaDB's in seconds, MySQL's in milliseconds (each
        // server knows one of them).
        let seconds = config.timeout.as_secs().max(1);
        let mariadb = conn.execute(format!("SET SESSION max_statement_time = {seconds}").as_str()).await;
        if mariadb.is_err() {
            conn.execute(format!("SET SESSION max_execution_time = {}", seconds * 1000).as_str())
                .await
                .map_err(|e| sql_error("cannot set a time limit", e))?;
        }
        conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .await
            .map_err(|e| sql_error("cannot set the isolation", e))?;
        conn.execute("START TRANSACTION READ ONLY, WITH CONSISTENT SNAPSHOT").await.map_err(|e| sql_error("cannot begin", e))?;
        // Prepared alone: one statement, or an error here. Only then is it wrapped.
        let described = conn.describe(query.as_str()).await.map_err(|e| sql_error("the query", e))?;
        let columns: Vec<String> = described.columns().iter().map(|c| c.name().to_string()).collect();
        if columns.is_empty() {
            return Err(ConnectError::invalid("query", "the query gives no columns"));
        }
        let text = columns
            .iter()
            .map(|c| format!("CONVERT(q.{} USING utf8mb4) AS {}", quote_ident(c), quote_ident(c)))
            .collect::<Vec<_>>()
            .join(", ");
        let (rows_query, bounds, next_state) = match &options.incremental {
            None => (format!("SELECT {text} FROM (\n{query}\n) AS q"), Vec::new(), None),
            Some(column) => {
                let Some(col) = described.columns().iter().find(|c| c.name() == column) else {
                    return Err(ConnectError::invalid("incremental", format!("the query has no column {column:?}")));
                };
                let ty = col.type_info().name().to_string();
                let Some(cast) = incremental_cast(&ty) else {
                    return Err(ConnectError::invalid(
                        "incremental",
                        format!("column {column:?} is {ty}; an incremental column is a number, date, time or text"),
                    ));
                };
                let c = format!("q.{}", quote_ident(column));
                let past = if state.watermark.is_some() { format!("{c} > CAST(? AS {cast})") } else { "TRUE".to_string() };
                let high_query = format!("SELECT CONVERT(max({c}) USING utf8mb4) AS high FROM (\n{query}\n) AS q WHERE {past}");
                let mut high = sqlx::query(&high_query);
                if let Some(w) = &state.watermark {
                    high = high.bind(w.clone());
                }
                let high: Option<String> = high
                    .fetch_one(&mut conn)
                    .await
                    .map_err(|e| sql_error("the query", e))?
                    .try_get("high")
                    .map_err(|e| sql_error("the query", e))?;
                let Some(high) = high else { return Ok(None) };
                let mut bounds: Vec<String> = state.watermark.iter().cloned().collect();
                bounds.push(high.clone());
                let select = format!("SELECT {text} FROM (\n{query}\n) AS q WHERE {past} AND {c} <= CAST(? AS {cast}) ORDER BY {c}");
                (select, bounds, Some(high))
            }
        };
        let db: String = url.path().trim_start_matches('/').chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(40).collect();
        let name = format!("{}.csv", if db.is_empty() { "sql" } else { db.as_str() });
        let mut staging = Staging::create(name, config.max_bytes).await?;
        let mut out = csv::WriterBuilder::new().from_writer(Vec::with_capacity(1 << 20));
        out.write_record(&columns).map_err(|e| ConnectError::Source(format!("writing the rows: {e}")))?;
        let mut q = sqlx::query(&rows_query);
        for b in bounds {
            q = q.bind(b);
        }
        let mut rows = q.fetch(&mut conn);
        let mut values: Vec<String> = Vec::with_capacity(columns.len());
        while let Some(row) = rows.try_next().await.map_err(|e| sql_error("reading the rows", e))? {
            values.clear();
            for (i, name) in columns.iter().enumerate() {
                let v: Option<String> = row.try_get(i).map_err(|e| sql_error(&format!("column {name:?}"), e))?;
                values.push(v.unwrap_or_default());
            }
            out.write_record(&values).map_err(|e| ConnectError::Source(format!("writing the rows: {e}")))?;
            if out.get_ref().len() >= 1 << 20 {
                let buffer = out.into_inner().map_err(|e| ConnectError::Source(format!("writing the rows: {e}")))?;
                staging.write(&buffer).await?;
                out = csv::WriterBuilder::new().from_writer(Vec::with_capacity(1 << 20));
            }
        }
        drop(rows);
        let rest = out.into_inner().map_err(|e| ConnectError::Source(format!("writing the rows: {e}")))?;
        staging.write(&rest).await?;
        // A full pull is unchanged when its bytes are; an incremental read found new rows.
        let compare = next_state.is_none();
        let new_state = SourceState { watermark: next_state.or(state.watermark.clone()), ..SourceState::default() };
        Ok(Some(staging.finish(new_state, state, compare).await?))
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
    fn only_a_select_is_a_query() {
        for q in
            ["SELECT 1", " with x as (select 1) select * from x", "(SELECT 1)", "/* hei */ SELECT 1", "-- hei\nSELECT 1", "# hei\nselect 1"]
        {
            assert!(is_select(q), "{q}");
        }
        for q in [
            "DELETE FROM t",
            "CALL p()",
            "/*! DELETE FROM t */ SELECT 1",
            "/*M! DROP TABLE t */ SELECT 1",
            "/* unclosed SELECT 1",
            "-- SELECT 1",
            "SELECTX 1",
            "",
            "LOAD DATA INFILE 'x' INTO TABLE t",
            "SELECT id FROM soknader_v LOCK IN SHARE MODE",
            "SELECT id FROM t FOR  UPDATE",
            "select id from t for share",
            "SELECT 1 AS a /*!50000 , atk.writer('x') */",
        ] {
            assert!(!is_select(q), "{q}");
        }
    }

    #[test]
    fn names_are_quoted_and_types_cast() {
        assert_eq!(quote_ident("endret` FROM t; DROP"), "`endret`` FROM t; DROP`");
        assert_eq!(incremental_cast("BIGINT UNSIGNED"), Some("UNSIGNED"));
        assert_eq!(incremental_cast("DATETIME"), Some("DATETIME(6)"));
        assert_eq!(incremental_cast("VARCHAR"), Some("CHAR"));
        assert_eq!(incremental_cast("BLOB"), None);
        assert_eq!(incremental_cast("JSON"), None);
    }
}
