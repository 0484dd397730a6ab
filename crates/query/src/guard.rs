//! The SQL guard: what a query may contain before it is planned. Only a single `SELECT`-style
//! query; no table functions, no `UNNEST`/`PIVOT`/`JSON_TABLE` relations; only functions on the
//! allow-list. Table names are checked against entitlements by the engine.

use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{Expr, Statement, TableFactor, Visit, Visitor};

use crate::QueryError;

/// Scalar, aggregate and window functions a query may call. Everything else (table functions,
/// functions that read files or settings, functions that build huge values such as `repeat`
/// or `lpad`) is refused.
pub const ALLOWED_FUNCTIONS: &[&str] = &[
    // aggregates
    "count", "sum", "avg", "mean", "min", "max", "median", "stddev", "stddev_samp", "stddev_pop", "var", "var_samp",
    "var_pop", "bool_and", "bool_or", "string_agg", "array_agg", "first_value", "last_value", "approx_distinct",
    "approx_percentile_cont", "percentile_cont", "corr", "covar_samp", "covar_pop",
    // window
    "row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile", "lag", "lead", "nth_value",
    // conditional
    "coalesce", "nullif", "nvl", "ifnull", "greatest", "least",
    // text
    "lower", "upper", "length", "char_length", "character_length", "octet_length", "trim", "btrim", "ltrim",
    "rtrim", "substr", "substring", "left", "right", "concat", "concat_ws", "replace", "starts_with", "ends_with",
    "strpos", "position", "split_part", "initcap", "regexp_like", "regexp_match", "regexp_replace", "regexp_count",
    "translate",
    // numbers
    "abs", "round", "floor", "ceil", "ceiling", "trunc", "power", "pow", "sqrt", "cbrt", "ln", "log", "log10", "log2",
    "exp", "sign", "signum", "pi", "radians", "degrees", "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "mod",
    "gcd", "lcm", "isnan", "iszero",
    // dates and times
    "date_part", "datepart", "date_trunc", "datetrunc", "date_bin", "extract", "now", "current_date",
    "current_time", "current_timestamp", "to_date", "to_timestamp", "to_timestamp_seconds", "to_timestamp_millis",
    "to_timestamp_micros", "to_char", "make_date", "to_unixtime", "from_unixtime",
];

/// Checks a parsed statement; the error names what is not allowed and never echoes data.
pub fn check(statement: &DfStatement) -> Result<(), QueryError> {
    let query = match statement {
        DfStatement::Statement(s) => match s.as_ref() {
            q @ Statement::Query(_) => q,
            other => {
                return Err(QueryError::NotAllowed(format!(
                    "only SELECT queries are allowed, not {}",
                    statement_kind(other)
                )));
            }
        },
        DfStatement::Explain(_) => return Err(QueryError::NotAllowed("EXPLAIN is not allowed".into())),
        _ => return Err(QueryError::NotAllowed("only SELECT queries are allowed".into())),
    };
    let mut guard = Guard;
    match query.visit(&mut guard) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(why) => Err(QueryError::NotAllowed(why)),
    }
}

fn statement_kind(s: &Statement) -> String {
    let text = s.to_string();
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    match words.first() {
        Some(w) if w.eq_ignore_ascii_case("CREATE") || w.eq_ignore_ascii_case("DROP") || w.eq_ignore_ascii_case("ALTER") => {
            words.join(" ").to_uppercase()
        }
        Some(w) => w.to_uppercase(),
        None => "this statement".into(),
    }
}

struct Guard;

impl Visitor for Guard {
    type Break = String;

    fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<String> {
        match t {
            TableFactor::Table { args: Some(_), name, .. } => {
                ControlFlow::Break(format!("table functions such as {name}(…) are not allowed"))
            }
            TableFactor::Table { .. } | TableFactor::Derived { .. } | TableFactor::NestedJoin { .. } => {
                ControlFlow::Continue(())
            }
            _ => ControlFlow::Break("only tables, subqueries and joins may appear in FROM".into()),
        }
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<String> {
        if let Expr::Function(f) = e {
            let name = f.name.to_string().to_ascii_lowercase();
            let name = name.trim_matches('"');
            if !ALLOWED_FUNCTIONS.contains(&name) {
                return ControlFlow::Break(format!("the function {name} is not allowed"));
            }
        }
        ControlFlow::Continue(())
    }
}
