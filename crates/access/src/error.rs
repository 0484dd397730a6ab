//! Why a query failed, in words that never quote a value from data: [`QueryError`], and the
//! mapping from DataFusion's errors (by their type where Arrow gives one, by their text only
//! where DataFusion gives nothing else), so that an error cannot serve as an oracle.

use arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use tverr_policy::PolicyError;
use tverr_store::StoreError;

const DIVISION_BY_ZERO: &str = "division by zero";
const NOT_CONVERTED: &str = "a value could not be converted to the requested type";
const OVERFLOW: &str = "a number overflowed";
const MEMORY: &str = "the query needs more memory than it may use";

/// Why a query failed. Texts never contain values from data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The SQL is not allowed (DDL, DML, statements, several statements, functions).
    #[error("not allowed: {0}")]
    NotAllowed(String),
    /// The SQL or expression is invalid.
    #[error("invalid query: {0}")]
    Invalid(String),
    /// The table does not exist or the caller may not read it; the two look the same.
    #[error("no dataset {0} exists that you may read")]
    NotFound(String),
    /// Reading this dataset needs a declared purpose.
    #[error("a purpose is required to read {0}: declare one (Tverr-Purpose header, purpose= or --purpose)")]
    PurposeRequired(String),
    /// The declared purpose does not cover this dataset.
    #[error("the purpose {purpose} does not allow reading {dataset}")]
    PurposeNotAllowed {
        /// The dataset.
        dataset: String,
        /// The declared purpose.
        purpose: String,
    },
    /// A dataset or version does not exist (admin paths), or the catalogue failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The policy layer failed.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// Execution failed.
    #[error("query failed: {0}")]
    Execution(String),
    /// Writing the output failed.
    #[error("cannot write the output: {0}")]
    Output(String),
    /// The access log cannot be written, so nothing is released.
    #[error("the access log cannot be written, so nothing is released: {0}")]
    AuditUnavailable(String),
    /// The query ran past its time limit and was stopped.
    #[error("the query took longer than the {0} s it may take, and was stopped")]
    Timeout(u64),
    /// The result is larger than the caller may receive in one query.
    #[error(
        "the result has more than the {0} rows one query may return without signing in; narrow it (WHERE, LIMIT) or download the dataset's file"
    )]
    TooManyRows(u64),
}

impl From<datafusion::error::DataFusionError> for QueryError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        use datafusion::error::DataFusionError as E;
        // Planning errors arrive wrapped (in diagnostics or context); decide by the root. The
        // optimizer's and DataFusion's internal errors describe plans, not the query: never
        // shown.
        let root = e.find_root();
        if matches!(root, E::Internal(_)) || e.to_string().contains("Optimizer rule") {
            return QueryError::Invalid("the query could not be planned; simplify it".into());
        }
        match root {
            E::External(inner) if inner.downcast_ref::<AuditFailure>().is_some() => QueryError::AuditUnavailable(inner.to_string()),
            E::External(inner) if inner.downcast_ref::<RowCap>().is_some() => {
                QueryError::TooManyRows(inner.downcast_ref::<RowCap>().map_or(0, |c| c.0))
            }
            E::External(inner) if inner.downcast_ref::<crate::execution::TooLarge>().is_some() => QueryError::NotAllowed(inner.to_string()),
            E::External(inner) if inner.downcast_ref::<TimedOut>().is_some() => {
                QueryError::Timeout(inner.downcast_ref::<TimedOut>().map_or(0, |t| t.0))
            }
            E::SQL(..) | E::Plan(_) | E::SchemaError(..) => QueryError::Invalid(plan_message(&e.strip_backtrace())),
            E::NotImplemented(m) => QueryError::NotAllowed(m.clone()),
            other => QueryError::Execution(execution_message(other)),
        }
    }
}

/// A planning error's text, without DataFusion's list of every signature a function would
/// have taken (thousands of characters for the geo functions).
fn plan_message(text: &str) -> String {
    const NO_MATCH: &str = "No function matches the given name and argument types '";
    let Some(start) = text.find(NO_MATCH) else { return text.to_string() };
    let call = text[start + NO_MATCH.len()..].split('\'').next().unwrap_or_default();
    let mut message = format!("the function call {call} does not take these argument types");
    if call.starts_with("st_") && call.contains("Binary") {
        message.push_str(
            "; geometry columns are WKB: convert them first, e.g. ST_X(ST_GeomFromWKB(geometry)), or use a function that takes WKB (ST_AsText, ST_Transform, ST_DWithin, ST_Area)",
        );
    }
    message
}

/// A message for an execution error that says what kind of thing failed but never echoes a
/// value (DataFusion's own texts quote the value that failed to cast, for example).
fn execution_message(e: &datafusion::error::DataFusionError) -> String {
    let original = e.to_string();
    let text = original.to_ascii_lowercase();
    // A bounded text function's refusal is a fixed text that never quotes a value.
    if original.contains(crate::text::TOO_LONG) {
        return format!("a text function: {}", crate::text::TOO_LONG);
    }
    // Tverr's own geo functions fail with fixed texts that never quote a value.
    for function in crate::geo::FAILING_FUNCTIONS {
        for failure in crate::geo::FAILURES {
            let known = format!("{function}: {failure}");
            if original.contains(&known) {
                return known;
            }
        }
    }
    // Arrow's kernels say what failed in the error's type; only DataFusion's own execution
    // errors come as text alone.
    match e {
        DataFusionError::ArrowError(a, _) => match a.as_ref() {
            ArrowError::DivideByZero => return DIVISION_BY_ZERO.into(),
            ArrowError::CastError(_) | ArrowError::ParseError(_) => return NOT_CONVERTED.into(),
            ArrowError::ArithmeticOverflow(_) => return OVERFLOW.into(),
            ArrowError::MemoryError(_) => return MEMORY.into(),
            _ => {}
        },
        DataFusionError::ResourcesExhausted(_) => return MEMORY.into(),
        _ => {}
    }
    if text.contains("divide by zero") || text.contains("division by zero") {
        DIVISION_BY_ZERO.into()
    } else if text.contains("regex") || text.contains("regular expression") {
        "a regular expression is invalid".into()
    } else if text.contains("cast") || text.contains("parse") {
        NOT_CONVERTED.into()
    } else if text.contains("resources exhausted") || text.contains("memory") {
        MEMORY.into()
    } else if text.contains("overflow") {
        OVERFLOW.into()
    } else {
        "the query could not be computed".into()
    }
}

/// Why an audited stream stopped releasing: the log could not be written.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct AuditFailure(pub(crate) String);

/// Why a capped stream stopped: it would have released more rows than allowed.
#[derive(Debug, thiserror::Error)]
#[error("more than {0} rows")]
pub(crate) struct RowCap(pub(crate) u64);

/// Why a bounded stream stopped: its time was up (seconds allowed).
#[derive(Debug, thiserror::Error)]
#[error("the query took longer than {0} s")]
pub(crate) struct TimedOut(pub(crate) u64);

#[cfg(test)]
mod tests {
    use super::*;

    /// The message a failed execution is shown with.
    fn shown(e: DataFusionError) -> String {
        match QueryError::from(e) {
            QueryError::Execution(m) => m,
            other => panic!("not an execution error: {other:?}"),
        }
    }

    #[test]
    fn an_execution_error_names_its_kind_and_never_the_value() {
        let secret = "01017012345";
        let arrow = |a: ArrowError| DataFusionError::ArrowError(Box::new(a), None);
        let cases = [
            (arrow(ArrowError::DivideByZero), DIVISION_BY_ZERO),
            (arrow(ArrowError::CastError(format!("Cannot cast string '{secret}' to value of Int64 type"))), NOT_CONVERTED),
            (arrow(ArrowError::ParseError(format!("Error parsing timestamp from '{secret}'"))), NOT_CONVERTED),
            (arrow(ArrowError::ArithmeticOverflow(format!("Overflow happened on: {secret} * 10"))), OVERFLOW),
            (DataFusionError::ResourcesExhausted(format!("{secret} bytes")), MEMORY),
            // DataFusion's own texts: the kind is read from the words, the value is dropped.
            (DataFusionError::Execution(format!("Cast error: cannot cast '{secret}'")), NOT_CONVERTED),
            (DataFusionError::Execution(format!("something about {secret}")), "the query could not be computed"),
        ];
        for (error, expected) in cases {
            let text = error.to_string();
            let message = shown(error);
            assert_eq!(message, expected, "{text}");
            assert!(!message.contains(secret), "{message}");
        }
    }
}
