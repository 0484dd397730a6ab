//! Feature ids: a name for each row that OGC API Features clients keep between requests.
//!
//! A dataset has no declared primary key, so a row's id is a digest of its released values:
//! the same for an unchanged row in every version and every request of the same caller, and
//! computed only from what the caller is shown (a masked value enters as its mask), so it tells
//! nothing the row itself does not. Rows whose every released value is equal share an id.

use std::sync::Arc;

use arrow::array::{ArrayRef, StringBuilder};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};
use sha2::{Digest, Sha256};

/// The column [`crate::RowsQuery::feature_ids`] adds.
pub const FEATURE_ID_COLUMN: &str = "__tverr_feature_id";

/// The id of a row given as its values' texts (`None` for null), in column order: 16 hex
/// digits of the SHA-256 of each value's length and bytes.
pub fn feature_id<'a>(values: impl IntoIterator<Item = Option<&'a str>>) -> String {
    let mut h = Sha256::new();
    for v in values {
        match v {
            None => h.update([0u8]),
            Some(text) => {
                h.update([1u8]);
                h.update((text.len() as u64).to_le_bytes());
                h.update(text.as_bytes());
            }
        }
    }
    hex::encode(&h.finalize()[..8])
}

/// `feature_id(column, …)`: [`feature_id`] of each row. Never registered by name, so SQL cannot
/// call it; [`crate::Engine::rows`] plans it over every released column.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct FeatureId {
    signature: Signature,
}

impl FeatureId {
    /// The function.
    pub(crate) fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(Self { signature: Signature::variadic_any(Volatility::Immutable) })
    }
}

impl ScalarUDFImpl for FeatureId {
    fn name(&self) -> &str {
        "tverr_feature_id"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        let arrays: Vec<ArrayRef> = args.args.iter().map(|a| a.to_array(n)).collect::<DfResult<_>>()?;
        let options = FormatOptions::default();
        let formatters: Vec<ArrayFormatter> =
            arrays.iter().map(|a| ArrayFormatter::try_new(a.as_ref(), &options)).collect::<Result<_, _>>()?;
        let mut out = StringBuilder::with_capacity(n, n * 16);
        let mut texts: Vec<Option<String>> = Vec::with_capacity(arrays.len());
        for row in 0..n {
            texts.clear();
            for (a, f) in arrays.iter().zip(&formatters) {
                texts.push(if a.is_null(row) { None } else { Some(f.value(row).to_string()) });
            }
            out.append_value(feature_id(texts.iter().map(Option::as_deref)));
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_depend_on_every_value_and_on_where_one_ends() {
        let a = feature_id([Some("ab"), Some("c")]);
        assert_eq!(a.len(), 16);
        assert_eq!(a, feature_id([Some("ab"), Some("c")]));
        assert_ne!(a, feature_id([Some("a"), Some("bc")]));
        assert_ne!(a, feature_id([Some("ab"), None]));
        assert_ne!(feature_id([None, Some("")]), feature_id([Some(""), None]));
    }
}
