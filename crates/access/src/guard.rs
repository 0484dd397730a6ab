//! The SQL guard: what a query may contain before it is planned. Only a single `SELECT`-style
//! query; no table functions, no `UNNEST`/`PIVOT`/`JSON_TABLE` relations; only functions on the
//! allow-list. Table names are checked against entitlements by the engine.
//!
//! Text is parsed once, with one dialect (PostgreSQL's, which has no executable comments), and
//! the tree that was checked is the tree that is planned: [`statement`] for SQL, [`filter`] for
//! REST `where=` and agreement row filters. Before anything is parsed, [`bounded`] refuses text
//! whose expressions could nest deeper than [`MAX_NESTING`], so no input reaches a recursion
//! (parser, planner, optimizer, evaluation or drop) that could exhaust a thread's stack.

use std::ops::ControlFlow;

use datafusion::common::DFSchema;
use datafusion::execution::SessionState;
use datafusion::sql::parser::DFParserBuilder;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::ExprWithAlias;
use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, SelectItem, SetExpr, Statement, TableFactor, Visit, Visitor,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::QueryError;

/// Scalar, aggregate and window functions a query may call. Everything else (table functions,
/// functions that read files or settings, functions that build huge values such as `repeat`
/// or `lpad`) is refused.
pub const ALLOWED_FUNCTIONS: &[&str] = &[
    // aggregates
    "count",
    "sum",
    "avg",
    "mean",
    "min",
    "max",
    "median",
    "stddev",
    "stddev_samp",
    "stddev_pop",
    "var",
    "var_samp",
    "var_pop",
    "bool_and",
    "bool_or",
    "string_agg",
    "array_agg",
    "first_value",
    "last_value",
    "approx_distinct",
    "approx_percentile_cont",
    "percentile_cont",
    "corr",
    "covar_samp",
    "covar_pop",
    // window
    "row_number",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "ntile",
    "lag",
    "lead",
    "nth_value",
    // conditional
    "coalesce",
    "nullif",
    "nvl",
    "ifnull",
    "greatest",
    "least",
    // text
    "lower",
    "upper",
    "length",
    "char_length",
    "character_length",
    "octet_length",
    "trim",
    "btrim",
    "ltrim",
    "rtrim",
    "substr",
    "substring",
    "left",
    "right",
    "concat",
    "concat_ws",
    "replace",
    "starts_with",
    "ends_with",
    "strpos",
    "position",
    "split_part",
    "initcap",
    "regexp_like",
    "regexp_match",
    "regexp_replace",
    "regexp_count",
    "translate",
    // numbers
    "abs",
    "round",
    "floor",
    "ceil",
    "ceiling",
    "trunc",
    "power",
    "pow",
    "sqrt",
    "cbrt",
    "ln",
    "log",
    "log10",
    "log2",
    "exp",
    "sign",
    "signum",
    "pi",
    "radians",
    "degrees",
    "sin",
    "cos",
    "tan",
    "asin",
    "acos",
    "atan",
    "atan2",
    "mod",
    "gcd",
    "lcm",
    "isnan",
    "iszero",
    // dates and times
    "date_part",
    "datepart",
    "date_trunc",
    "datetrunc",
    "date_bin",
    "extract",
    "now",
    "current_date",
    "current_time",
    "current_timestamp",
    "to_date",
    "to_timestamp",
    "to_timestamp_seconds",
    "to_timestamp_millis",
    "to_timestamp_micros",
    "to_char",
    "make_date",
    "to_unixtime",
    "from_unixtime",
];

/// How deeply the expressions of one statement or filter may nest (operators, keywords and
/// brackets, counted as [`bounded`] counts them). Deep enough for any query a person writes;
/// far below what would exhaust a thread's stack in the parser, planner or evaluation.
pub const MAX_NESTING: usize = 256;

/// How many brackets opened after a word (`abs(`, `CAST(`, `NOT (`, `IN (`) may be open inside
/// one another: sqlparser's time on them grows exponentially with their depth, and at this
/// depth it stays within milliseconds.
pub const MAX_CALL_NESTING: usize = 8;

/// The longest SQL text or filter accepted, in bytes.
pub const MAX_SQL_BYTES: usize = 256 * 1024;

/// How deeply sqlparser may recurse (subqueries, parentheses) while parsing.
const PARSER_RECURSION_LIMIT: usize = 64;

/// Refuses text that is too long or whose expressions could nest deeper than [`MAX_NESTING`].
///
/// The bound is computed from tokens alone, without recursion, so it is safe on any input. Each
/// level of a parsed tree needs at least one token that is not a name, a literal or a comma (an
/// operator, a keyword or a bracket), so counting those per comma-separated part of each bracket
/// level, plus the depth of the brackets within, bounds the depth of the tree from above.
pub fn bounded(text: &str) -> Result<(), QueryError> {
    if text.len() > MAX_SQL_BYTES {
        return Err(QueryError::NotAllowed(format!("the query is {} bytes long; at most {MAX_SQL_BYTES} bytes are allowed", text.len())));
    }
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, text).tokenize().map_err(|e| QueryError::Invalid(e.to_string()))?;
    /// One bracket level: nesting tokens in the current comma-separated part, the deepest
    /// bracket inside that part, and the deepest part closed so far.
    #[derive(Default)]
    struct Level {
        part: usize,
        inner: usize,
        deepest: usize,
    }
    impl Level {
        fn depth(&self) -> usize {
            self.deepest.max(self.part + self.inner)
        }
    }
    let mut levels = vec![Level::default()];
    let mut deepest = 0;
    // Brackets opened right after a word (a function's or a keyword's: `abs(`, `CAST(`, `NOT (`),
    // which sqlparser may parse more than one way, each way again inside: its time grows
    // exponentially with their depth (measured: `CAST((` doubles three times a level).
    let mut calls: Vec<bool> = Vec::new();
    let mut after_word = false;
    for token in &tokens {
        let word = matches!(token, Token::Word(_));
        if !matches!(token, Token::Whitespace(_)) {
            let opens = matches!(token, Token::LParen | Token::LBracket | Token::LBrace);
            let closes = matches!(token, Token::RParen | Token::RBracket | Token::RBrace);
            if opens {
                calls.push(after_word);
                if calls.iter().filter(|c| **c).count() > MAX_CALL_NESTING {
                    return Err(QueryError::NotAllowed(format!(
                        "the query nests too deeply: at most {MAX_CALL_NESTING} functions or keyword brackets (NOT (…), CAST(…), IN (…)) may be open inside one another"
                    )));
                }
            } else if closes {
                calls.pop();
            }
            after_word = word;
        }
        match token {
            Token::Whitespace(_) | Token::EOF | Token::Period | Token::SemiColon | Token::Placeholder(_) => continue,
            Token::Word(w) if w.keyword == Keyword::NoKeyword || w.quote_style.is_some() => continue,
            Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_) => continue,
            Token::Comma => {
                let level = levels.last_mut().expect("the outermost level is never closed");
                level.deepest = level.depth();
                level.part = 0;
                level.inner = 0;
            }
            Token::LParen | Token::LBracket | Token::LBrace => levels.push(Level::default()),
            Token::RParen | Token::RBracket | Token::RBrace if levels.len() > 1 => {
                let closed = levels.pop().expect("more than one level").depth() + 1;
                let level = levels.last_mut().expect("the outermost level is never closed");
                level.inner = level.inner.max(closed);
            }
            _ => levels.last_mut().expect("the outermost level is never closed").part += 1,
        }
        let open: usize = levels.iter().map(|l| l.part + l.inner + 1).sum();
        deepest = deepest.max(open).max(levels.iter().map(Level::depth).max().unwrap_or(0));
        if deepest > MAX_NESTING {
            return Err(QueryError::NotAllowed(format!(
                "the query nests too deeply: at most {MAX_NESTING} levels of operators, functions and brackets are allowed (write long lists of alternatives as IN (…))"
            )));
        }
    }
    Ok(())
}

/// Parses one SQL statement with the PostgreSQL dialect after [`bounded`], and checks it.
pub fn statement(sql: &str) -> Result<DfStatement, QueryError> {
    bounded(sql)?;
    let mut statements = DFParserBuilder::new(sql)
        .with_dialect(&PostgreSqlDialect {})
        .with_recursion_limit(PARSER_RECURSION_LIMIT)
        .build()
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| QueryError::Invalid(e.strip_backtrace().to_string()))?;
    if statements.len() > 1 {
        return Err(QueryError::NotAllowed("only one statement per request".into()));
    }
    let mut statement = statements.pop_front().ok_or_else(|| QueryError::Invalid("the query is empty".into()))?;
    check(&statement)?;
    if let DfStatement::Statement(s) = &mut statement {
        bounded_concat(s.as_mut());
    }
    Ok(statement)
}

/// A boolean filter (REST `where=`, an agreement's row filter) parsed once and checked: the
/// tree in it is the tree that is planned, never the text again.
#[derive(Debug, Clone)]
pub struct CheckedFilter(datafusion::sql::sqlparser::ast::Expr);

impl CheckedFilter {
    /// The filter as a DataFusion expression over `schema`.
    pub(crate) fn plan(&self, state: &SessionState, schema: &DFSchema) -> datafusion::error::Result<datafusion::logical_expr::Expr> {
        state.create_logical_expr_from_sql_expr(ExprWithAlias { expr: self.0.clone(), alias: None }, schema)
    }
}

/// Parses and checks a filter: one expression (no alias), allowed functions only, and no
/// subqueries (a filter is about the rows of its own table).
pub fn filter(text: &str) -> Result<CheckedFilter, QueryError> {
    bounded(text)?;
    let parsed = DFParserBuilder::new(text)
        .with_dialect(&PostgreSqlDialect {})
        .with_recursion_limit(PARSER_RECURSION_LIMIT)
        .build()
        .and_then(|mut p| p.parse_into_expr())
        .map_err(|e| QueryError::Invalid(e.strip_backtrace().to_string()))?;
    if parsed.alias.is_some() {
        return Err(QueryError::Invalid("a filter is one expression, without AS".into()));
    }
    let expr = parsed.expr;
    let mut guard = Guard;
    if let ControlFlow::Break(why) = expr.visit(&mut guard) {
        return Err(QueryError::NotAllowed(why));
    }
    let mut nested = false;
    let _ = datafusion::sql::sqlparser::ast::visit_expressions(&expr, |e| {
        if matches!(e, Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. }) {
            nested = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    if nested {
        return Err(QueryError::NotAllowed("a filter cannot contain a subquery".into()));
    }
    let mut expr = expr;
    bounded_concat(&mut expr);
    Ok(CheckedFilter(expr))
}

/// Plans every `a || b` as the bounded text concatenation (`text::CONCAT_OPERATOR`), so a chain
/// of them cannot build text without limit.
fn bounded_concat<V: datafusion::sql::sqlparser::ast::VisitMut>(tree: &mut V) {
    use datafusion::sql::sqlparser::ast::{
        BinaryOperator, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, Ident, ObjectName,
    };
    let _ = datafusion::sql::sqlparser::ast::visit_expressions_mut(tree, |e| {
        if let Expr::BinaryOp { op: BinaryOperator::StringConcat, .. } = e {
            let Expr::BinaryOp { left, right, .. } = std::mem::replace(e, Expr::value(datafusion::sql::sqlparser::ast::Value::Null)) else {
                unreachable!("matched above")
            };
            let arg = |x: Box<Expr>| FunctionArg::Unnamed(FunctionArgExpr::Expr(*x));
            *e = Expr::Function(Function {
                name: ObjectName::from(vec![Ident::new(crate::text::CONCAT_OPERATOR)]),
                uses_odbc_syntax: false,
                parameters: FunctionArguments::None,
                args: FunctionArguments::List(FunctionArgumentList {
                    duplicate_treatment: None,
                    args: vec![arg(left), arg(right)],
                    clauses: vec![],
                }),
                filter: None,
                null_treatment: None,
                over: None,
                within_group: vec![],
            });
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Checks a parsed statement; the error names what is not allowed and never echoes data.
pub fn check(statement: &DfStatement) -> Result<(), QueryError> {
    let query = match statement {
        DfStatement::Statement(s) => match s.as_ref() {
            q @ Statement::Query(_) => q,
            other => {
                return Err(QueryError::NotAllowed(format!("only SELECT queries are allowed, not {}", statement_kind(other))));
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
            TableFactor::Table { .. } | TableFactor::Derived { .. } | TableFactor::NestedJoin { .. } => ControlFlow::Continue(()),
            _ => ControlFlow::Break("only tables, subqueries and joins may appear in FROM".into()),
        }
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<String> {
        // SQL's OVERLAY syntax is planned straight to its function, past the registry where text
        // functions are bounded (`text.rs`); it can double a value per CTE level.
        if let Expr::Overlay { .. } = e {
            return ControlFlow::Break("OVERLAY is not allowed".into());
        }
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
/// The shape is an allow-list over the whole statement: every field of the query and of its
/// `SELECT` is named below (a new field in a newer sqlparser stops the build until it is judged)
/// and must be empty, except the one table, plain `GROUP BY` columns, a projection of those
/// columns and `count`/`sum`/`avg` over plain columns, an `ORDER BY` of the same items, and a
/// literal `LIMIT`/`OFFSET`. So there is no `WHERE` (so "all" and "all but one" cannot be
/// compared), no join, subquery, CTE, set operation, window, or any other expression anywhere —
/// no clause can carry an oracle.
pub fn statistics(statement: &mut DfStatement, k: u32) -> Result<(), QueryError> {
    use datafusion::sql::sqlparser::ast::{LimitClause, OrderByKind, Query, Select, Value};
    let refuse = |why: &str| {
        Err(QueryError::NotAllowed(format!(
            "this dataset is shared as statistics only: {why}; write SELECT <columns>, count(*) | sum(col) | avg(col) FROM <table> GROUP BY <columns> [ORDER BY …] [LIMIT n]"
        )))
    };
    let DfStatement::Statement(s) = statement else { return refuse("not a SELECT") };
    let Statement::Query(query) = s.as_mut() else { return refuse("not a SELECT") };
    let Query { with, body, order_by, limit_clause, fetch, locks, for_clause, settings, format_clause, pipe_operators } = query.as_mut();
    if with.is_some() {
        return refuse("WITH is not allowed");
    }
    if fetch.is_some()
        || !locks.is_empty()
        || for_clause.is_some()
        || settings.is_some()
        || format_clause.is_some()
        || !pipe_operators.is_empty()
    {
        return refuse("only ORDER BY, LIMIT and OFFSET may follow GROUP BY");
    }
    let literal = |e: &Expr| matches!(e, Expr::Value(v) if matches!(v.value, Value::Number(..)));
    match limit_clause {
        None => {}
        Some(LimitClause::LimitOffset { limit, offset, limit_by }) => {
            let limit_ok = limit.as_ref().is_none_or(literal);
            let offset_ok = offset.as_ref().is_none_or(|o| literal(&o.value));
            if !limit_ok || !offset_ok || !limit_by.is_empty() {
                return refuse("LIMIT and OFFSET take whole numbers only");
            }
        }
        Some(LimitClause::OffsetCommaLimit { .. }) => return refuse("LIMIT and OFFSET take whole numbers only"),
    }
    let SetExpr::Select(select) = body.as_mut() else {
        return refuse("UNION, INTERSECT, EXCEPT and VALUES are not allowed");
    };
    let Select {
        select_token: _,
        optimizer_hints,
        distinct,
        select_modifiers,
        top,
        top_before_distinct: _,
        projection,
        exclude,
        into,
        from,
        lateral_views,
        prewhere,
        selection,
        connect_by,
        group_by,
        cluster_by,
        distribute_by,
        sort_by,
        having,
        named_window,
        qualify,
        window_before_qualify: _,
        value_table_mode,
        flavor: _,
    } = select.as_mut();
    if !optimizer_hints.is_empty()
        || distinct.is_some()
        || select_modifiers.is_some()
        || top.is_some()
        || exclude.is_some()
        || into.is_some()
    {
        return refuse("DISTINCT, TOP, EXCLUDE and INTO are not allowed");
    }
    if !lateral_views.is_empty()
        || !connect_by.is_empty()
        || !cluster_by.is_empty()
        || !distribute_by.is_empty()
        || !sort_by.is_empty()
        || !named_window.is_empty()
        || value_table_mode.is_some()
    {
        return refuse("only SELECT, FROM, GROUP BY, ORDER BY and LIMIT are allowed");
    }
    if from.len() != 1 || !from[0].joins.is_empty() {
        return refuse("the query must read the one table alone, without joins");
    }
    if !matches!(
        &from[0].relation,
        TableFactor::Table { args: None, alias: None, with_hints, version: None, with_ordinality: false, partitions, json_path: None, sample: None, index_hints, .. }
            if with_hints.is_empty() && partitions.is_empty() && index_hints.is_empty()
    ) {
        return refuse("the query must read the table itself, not a subquery");
    }
    if selection.is_some() || prewhere.is_some() {
        return refuse("WHERE is not allowed");
    }
    if having.is_some() || qualify.is_some() {
        return refuse("HAVING is not allowed (Tverr adds its own)");
    }
    let keys: Vec<String> = match group_by {
        GroupByExpr::Expressions(exprs, modifiers) if modifiers.is_empty() => {
            let mut keys = Vec::new();
            for e in exprs.iter() {
                match column_name(e) {
                    Some(name) => keys.push(name),
                    None => return refuse("GROUP BY may name columns only"),
                }
            }
            keys
        }
        _ => return refuse("GROUP BY ALL, ROLLUP and CUBE are not allowed"),
    };
    let mut aliases = Vec::new();
    for item in projection.iter() {
        let expr = match item {
            SelectItem::UnnamedExpr(e) => e,
            SelectItem::ExprWithAlias { expr, alias } => {
                aliases.push(alias.value.to_ascii_lowercase());
                expr
            }
            _ => return refuse("* is not allowed"),
        };
        if let Err(why) = statistics_item(expr, &keys, &[]) {
            return refuse(why);
        }
    }
    if let Some(order) = order_by {
        if order.interpolate.is_some() {
            return refuse("INTERPOLATE is not allowed");
        }
        let OrderByKind::Expressions(items) = &order.kind else { return refuse("ORDER BY ALL is not allowed") };
        for item in items {
            if item.with_fill.is_some() {
                return refuse("WITH FILL is not allowed");
            }
            if let Err(why) = statistics_item(&item.expr, &keys, &aliases) {
                return refuse(why);
            }
        }
    }
    let having_expr = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&format!("count(*) >= {k}"))
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| QueryError::Invalid(e.to_string()))?;
    *having = Some(having_expr);
    Ok(())
}

/// One item of a statistics query's projection or order: a group column, an alias of the
/// projection, or `count`/`sum`/`avg` over one plain column (or `*` for `count`).
fn statistics_item(expr: &Expr, keys: &[String], aliases: &[String]) -> Result<(), &'static str> {
    use datafusion::sql::sqlparser::ast::Function;
    if let Some(name) = column_name(expr) {
        return if keys.contains(&name) || (aliases.contains(&name) && matches!(expr, Expr::Identifier(_))) {
            Ok(())
        } else {
            Err("every plain column must be a GROUP BY column")
        };
    }
    let Expr::Function(f) = expr else { return Err("select and order by group columns and aggregates only") };
    let Function { name, uses_odbc_syntax, parameters, args, filter, null_treatment, over, within_group } = f;
    let name = name.to_string().to_ascii_lowercase();
    if !STATISTICS_AGGREGATES.contains(&name.as_str())
        || *uses_odbc_syntax
        || !matches!(parameters, FunctionArguments::None)
        || filter.is_some()
        || null_treatment.is_some()
        || over.is_some()
        || !within_group.is_empty()
    {
        return Err("only count, sum and avg are allowed");
    }
    let FunctionArguments::List(list) = args else { return Err("only count, sum and avg are allowed") };
    let plain = list.clauses.is_empty()
        && list.duplicate_treatment.is_none()
        && list.args.len() == 1
        && match &list.args[0] {
            FunctionArg::Unnamed(FunctionArgExpr::Wildcard) => name == "count",
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => column_name(e).is_some(),
            _ => false,
        };
    if plain { Ok(()) } else { Err("aggregates must take one column (or * for count)") }
}

fn column_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(i) => Some(i.value.to_ascii_lowercase()),
        Expr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.to_ascii_lowercase()),
        Expr::Nested(inner) => column_name(inner),
        _ => None,
    }
}
