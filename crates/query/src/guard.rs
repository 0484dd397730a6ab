//! The SQL guard: what a query may contain before it is planned. Only a single `SELECT`-style
//! query; no table functions, no `UNNEST`/`PIVOT`/`JSON_TABLE` relations; only functions on the
//! allow-list. Table names are checked against entitlements by the engine.

use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, SelectItem, SetExpr, Statement, TableFactor, Visit,
    Visitor,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

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
            if !ALLOWED_FUNCTIONS.contains(&name) && !crate::geo::function_names().any(|g| g == name) {
                return ControlFlow::Break(format!("the function {name} is not allowed"));
            }
        }
        ControlFlow::Continue(())
    }
}

/// Aggregates a statistics-only grant allows: none of them returns one person's value.
const STATISTICS_AGGREGATES: &[&str] = &["count", "sum", "avg", "mean"];

/// Checks that a query over a statistics-only dataset is a plain grouped aggregate over that
/// table alone, and adds `HAVING count(*) >= k` so that smaller groups are suppressed.
///
/// The shape is strict so that one person cannot be isolated: no `WHERE` (so "all" and "all but
/// one" cannot be compared), no joins, subqueries, CTEs or set operations, group keys that are
/// plain columns, and only `count`, `sum` and `avg` over plain columns.
pub fn statistics(statement: &mut DfStatement, k: u32) -> Result<(), QueryError> {
    let refuse = |why: &str| {
        Err(QueryError::NotAllowed(format!(
            "this dataset is shared as statistics only: {why}; write SELECT <columns>, count(*) | sum(col) | avg(col) FROM <table> GROUP BY <columns>"
        )))
    };
    let DfStatement::Statement(s) = statement else { return refuse("not a SELECT") };
    let Statement::Query(query) = s.as_mut() else { return refuse("not a SELECT") };
    if query.with.is_some() {
        return refuse("WITH is not allowed");
    }
    let SetExpr::Select(select) = query.body.as_mut() else {
        return refuse("UNION, INTERSECT, EXCEPT and VALUES are not allowed");
    };
    if select.from.len() != 1 || !select.from[0].joins.is_empty() {
        return refuse("the query must read the one table alone, without joins");
    }
    if !matches!(select.from[0].relation, TableFactor::Table { args: None, .. }) {
        return refuse("the query must read the table itself, not a subquery");
    }
    if select.selection.is_some() || select.prewhere.is_some() {
        return refuse("WHERE is not allowed");
    }
    if select.having.is_some() || select.qualify.is_some() {
        return refuse("HAVING is not allowed (Tverr adds its own)");
    }
    let keys: Vec<String> = match &select.group_by {
        GroupByExpr::Expressions(exprs, modifiers) if modifiers.is_empty() => {
            let mut keys = Vec::new();
            for e in exprs {
                match column_name(e) {
                    Some(name) => keys.push(name),
                    None => return refuse("GROUP BY may name columns only"),
                }
            }
            keys
        }
        _ => return refuse("GROUP BY ALL, ROLLUP and CUBE are not allowed"),
    };
    for item in &select.projection {
        let expr = match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
            _ => return refuse("* is not allowed"),
        };
        if let Some(name) = column_name(expr) {
            if !keys.contains(&name) {
                return refuse("every plain column must be a GROUP BY column");
            }
            continue;
        }
        let Expr::Function(f) = expr else { return refuse("select group columns and aggregates only") };
        let name = f.name.to_string().to_ascii_lowercase();
        if !STATISTICS_AGGREGATES.contains(&name.as_str()) || f.over.is_some() || f.filter.is_some() {
            return refuse("only count, sum and avg are allowed");
        }
        let FunctionArguments::List(list) = &f.args else { return refuse("only count, sum and avg are allowed") };
        let plain = list.clauses.is_empty()
            && list.args.len() == 1
            && match &list.args[0] {
                FunctionArg::Unnamed(FunctionArgExpr::Wildcard) => name == "count",
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => column_name(e).is_some(),
                _ => false,
            };
        if !plain {
            return refuse("aggregates must take one column (or * for count)");
        }
    }
    let having = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&format!("count(*) >= {k}"))
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| QueryError::Invalid(e.to_string()))?;
    select.having = Some(having);
    Ok(())
}

fn column_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(i) => Some(i.value.to_ascii_lowercase()),
        Expr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.to_ascii_lowercase()),
        Expr::Nested(inner) => column_name(inner),
        _ => None,
    }
}
