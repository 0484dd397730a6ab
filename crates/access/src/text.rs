//! Bounds on the text a query can build. A text function that multiplies its input (`replace`
//! of one letter with ten, nested nine times, makes a gigabyte from one letter) or a `||` chain
//! doubled through a CTE per level would otherwise grow memory without limit, and scalar
//! functions' results are not counted by DataFusion's memory pool. Each function that can lengthen
//! text is wrapped so that, before it runs, an upper bound of its result is computed from its
//! arguments' lengths and checked: at most [`MAX_TEXT_BYTES`] per value and
//! [`MAX_BATCH_TEXT_BYTES`] per batch.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use arrow::datatypes::DataType;
use datafusion::common::{Result as DfResult, exec_err};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};
use datafusion::prelude::SessionContext;

/// The longest text value a query may build, in bytes.
pub const MAX_TEXT_BYTES: u64 = 16 << 20;

/// The most text one function call may build for one batch, in bytes.
pub const MAX_BATCH_TEXT_BYTES: u64 = 256 << 20;

/// The name `a || b` is planned as (see `guard::statement`).
pub(crate) const CONCAT_OPERATOR: &str = "tverr_text_concat";

/// What a bounded function says when its result would be too long (after its name and ": ").
pub(crate) const TOO_LONG: &str = "the text it would build is longer than a query may build (16 MiB per value, 256 MiB per batch)";

/// How a function's result length is bounded by its arguments' lengths (bytes, per row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Growth {
    /// `replace(s, from, to)`: every occurrence of `from` becomes `to`.
    Replace,
    /// `regexp_replace(s, pattern, replacement[, flags])`: every match becomes the replacement,
    /// whose references to groups add at most the text matched (matches do not overlap).
    RegexpReplace,
    /// `concat(…)` and `||`: the sum of the parts.
    Sum,
    /// `concat_ws(sep, …)`: the parts with the separator between every two.
    Joined,
    /// A function whose result has at most this many times the bytes of its first argument:
    /// `translate` (an ASCII letter may become a four-byte one), `upper`, `lower`, `initcap`
    /// (a letter's other case may take more bytes).
    Expand(u64),
}

impl Growth {
    /// The bound for one row, from the lengths of its arguments (`None` for a null argument).
    fn bound(self, lengths: &[Option<u64>]) -> u64 {
        let len = |i: usize| lengths.get(i).copied().flatten().unwrap_or(0);
        match self {
            Growth::Replace => {
                let (s, from, to) = (len(0), len(1), len(2));
                s.checked_div(from).map_or(s, |n| s.saturating_add(n.saturating_mul(to)))
            }
            Growth::RegexpReplace => {
                let (s, replacement) = (len(0), len(2));
                // Each of at most s + 1 matches gets the replacement's text; each reference to a
                // group (`$1`, `\1`, `${name}`) adds at most the whole input over all matches.
                let references = replacement.min(64);
                s.saturating_add((s + 1).saturating_mul(replacement)).saturating_add(references.saturating_mul(s))
            }
            Growth::Sum => lengths.iter().map(|l| l.unwrap_or(0)).fold(0, u64::saturating_add),
            Growth::Expand(times) => len(0).saturating_mul(times),
            Growth::Joined => {
                let parts = Growth::Sum.bound(lengths);
                parts.saturating_add(len(0).saturating_mul(lengths.len() as u64))
            }
        }
    }
}

/// The byte length of an argument in one row, if it is text and not null (other types count as
/// their text form's length is bounded by a few dozen bytes).
fn length_at(value: &ColumnarValue, row: usize) -> Option<u64> {
    match value {
        ColumnarValue::Scalar(s) => {
            if s.is_null() {
                None
            } else {
                Some(s.to_string().len() as u64)
            }
        }
        ColumnarValue::Array(a) => {
            if a.is_null(row) {
                return None;
            }
            Some(match a.data_type() {
                DataType::Utf8 => a.as_string::<i32>().value(row).len() as u64,
                DataType::LargeUtf8 => a.as_string::<i64>().value(row).len() as u64,
                DataType::Utf8View => a.as_string_view().value(row).len() as u64,
                _ => 64,
            })
        }
    }
}

/// Fails when the bound of `growth` over these arguments passes a limit.
pub(crate) fn check(name: &str, growth: Growth, args: &[ColumnarValue], rows: usize) -> DfResult<()> {
    let rows = if args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) { 1 } else { rows };
    let mut total = 0u64;
    let mut lengths = Vec::with_capacity(args.len());
    for row in 0..rows {
        lengths.clear();
        lengths.extend(args.iter().map(|a| length_at(a, row)));
        let bound = growth.bound(&lengths);
        total = total.saturating_add(bound);
        if bound > MAX_TEXT_BYTES || total > MAX_BATCH_TEXT_BYTES {
            return exec_err!("{name}: {TOO_LONG}");
        }
    }
    Ok(())
}

/// `a || b` on text: both sides as text, null when either is null, bounded like `concat`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ConcatOperator {
    signature: Signature,
}

impl ScalarUDFImpl for ConcatOperator {
    fn name(&self) -> &str {
        CONCAT_OPERATOR
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        check("||", Growth::Sum, &args.args, args.number_rows)?;
        let scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if scalar { 1 } else { args.number_rows };
        let parts: Vec<ArrayRef> = args
            .args
            .iter()
            .map(|a| a.to_array(rows).and_then(|a| Ok(arrow::compute::cast(&a, &DataType::Utf8)?)))
            .collect::<DfResult<_>>()?;
        let mut out = StringBuilder::with_capacity(rows, 0);
        let mut value = String::new();
        for row in 0..rows {
            if parts.iter().any(|p| p.is_null(row)) {
                out.append_null();
                continue;
            }
            value.clear();
            for p in &parts {
                value.push_str(p.as_string::<i32>().value(row));
            }
            out.append_value(&value);
        }
        let array: ArrayRef = Arc::new(out.finish());
        if scalar {
            return Ok(ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&array, 0)?));
        }
        Ok(ColumnarValue::Array(array))
    }
}

/// Replaces the text functions that can lengthen text with bounded ones, and registers the
/// function `||` is planned as.
pub(crate) fn register(ctx: &SessionContext) {
    let bounded = [
        ("replace", Growth::Replace),
        ("regexp_replace", Growth::RegexpReplace),
        ("concat", Growth::Sum),
        ("concat_ws", Growth::Joined),
        ("translate", Growth::Expand(4)),
        ("upper", Growth::Expand(3)),
        ("lower", Growth::Expand(3)),
        ("initcap", Growth::Expand(3)),
    ];
    for (name, growth) in bounded {
        if let Some(f) = ctx.state().scalar_functions().get(name).cloned() {
            ctx.register_udf(ScalarUDF::new_from_impl(crate::geo::Guarded { inner: f.inner().clone(), bound: Some(growth) }));
        }
    }
    ctx.register_udf(ScalarUDF::new_from_impl(ConcatOperator { signature: Signature::variadic_any(Volatility::Immutable) }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_cover_what_each_function_can_build() {
        // replace('aaaa', 'a', 'bbb') is 12 bytes.
        assert!(Growth::Replace.bound(&[Some(4), Some(1), Some(3)]) >= 12);
        // regexp_replace('abc', '(.)', '$1$1', 'g') is 6 bytes.
        assert!(Growth::RegexpReplace.bound(&[Some(3), Some(3), Some(4)]) >= 6);
        assert_eq!(Growth::Sum.bound(&[Some(2), Some(3)]), 5);
        // concat_ws('--', 'a', 'b') is 4 bytes.
        assert!(Growth::Joined.bound(&[Some(2), Some(1), Some(1)]) >= 4);
        assert_eq!(Growth::Replace.bound(&[Some(5), Some(0), Some(9)]), 5, "an empty pattern changes nothing");
    }
}
