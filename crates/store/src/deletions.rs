//! Delta deletion vectors: the rows of a data file that a version no longer holds, kept beside
//! the file instead of in a rewritten copy of it. An upsert marks the rows it replaces this way
//! (`ingest.rs`), so changing 1 % of a table writes that 1 % and a small bitmap, not the table.
//!
//! The format is the Delta protocol's: a file `deletion_vector_<uuid>.bin` in the table's
//! directory, a version byte, then per vector its size (big-endian), the `RoaringBitmapArray`
//! magic (little-endian), a 64-bit roaring bitmap in the portable format and a CRC-32 (big-endian);
//! the `add` action names the file (z85 of the UUID), the offset, the size and the row count.
//! delta-rs's scan applies them; this module is for Tverr's own readers of data files (the
//! subject index, the change feed, erasure, the next upsert).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use deltalake::kernel::{DeletionVectorDescriptor, Protocol, StorageType};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use roaring::RoaringTreemap;

use crate::StoreError;

/// The magic number of the `RoaringBitmapArray` format, stored little-endian.
const MAGIC: u32 = 1_681_511_377;

/// Length of the z85 text of a UUID at the end of a relative deletion-vector path.
const UUID_Z85_LEN: usize = 20;

fn crc32() -> crc::Crc<u32> {
    crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC)
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Read(format!("deletion vector: {what}"))
}

/// The path, relative to the table's directory, of a deletion-vector file named by a UUID.
fn relative_path(descriptor: &DeletionVectorDescriptor) -> Result<Path, StoreError> {
    let text = &descriptor.path_or_inline_dv;
    if text.len() < UUID_Z85_LEN || !text.is_char_boundary(text.len() - UUID_Z85_LEN) {
        return Err(corrupt(format!("{text:?} is not a prefix and a z85 UUID")));
    }
    let (prefix, encoded) = text.split_at(text.len() - UUID_Z85_LEN);
    let bytes = z85::decode(encoded).map_err(|e| corrupt(format!("{text:?}: {e}")))?;
    let uuid = uuid::Uuid::from_slice(&bytes).map_err(|e| corrupt(format!("{text:?}: {e}")))?;
    let name = format!("deletion_vector_{uuid}.bin");
    let path = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
    Path::parse(&path).map_err(|e| corrupt(format!("{path:?}: {e}")))
}

/// The file name of a vector stored beside the data (`deletion_vector_<uuid>.bin`).
pub(crate) fn file_name(descriptor: &DeletionVectorDescriptor) -> Option<String> {
    (descriptor.storage_type == StorageType::UuidRelativePath)
        .then(|| relative_path(descriptor).ok())
        .flatten()
        .and_then(|p| p.filename().map(str::to_string))
}

/// The bitmap of one stored vector: magic, bitmap.
fn bitmap(bytes: &[u8]) -> Result<RoaringTreemap, StoreError> {
    if bytes.len() < 4 || u32::from_le_bytes(bytes[..4].try_into().expect("four bytes")) != MAGIC {
        return Err(corrupt("the bitmap does not start with the RoaringBitmapArray magic"));
    }
    RoaringTreemap::deserialize_from(&bytes[4..]).map_err(|e| corrupt(e.to_string()))
}

/// Reads the rows a descriptor marks deleted. `store` is rooted at the table's directory.
pub(crate) async fn read(store: &Arc<dyn ObjectStore>, descriptor: &DeletionVectorDescriptor) -> Result<RoaringTreemap, StoreError> {
    let deleted = match descriptor.storage_type {
        StorageType::Inline => {
            let bytes = z85::decode(&descriptor.path_or_inline_dv).map_err(|e| corrupt(e.to_string()))?;
            bitmap(&bytes)?
        }
        StorageType::UuidRelativePath => {
            let path = relative_path(descriptor)?;
            let offset = u64::try_from(descriptor.offset.unwrap_or(1)).map_err(|_| corrupt("a negative offset"))?;
            let size = u64::try_from(descriptor.size_in_bytes).map_err(|_| corrupt("a negative size"))?;
            // Size, magic + bitmap, CRC.
            let bytes = store.get_range(&path, offset..offset + 4 + size + 4).await.map_err(|e| StoreError::Read(e.to_string()))?;
            if (bytes.len() as u64) != 4 + size + 4 {
                return Err(corrupt(format!("{path} ends before the vector the log names")));
            }
            let stored = u32::from_be_bytes(bytes[..4].try_into().expect("four bytes")) as u64;
            if stored != size {
                return Err(corrupt(format!("{path} says {stored} bytes where the log says {size}")));
            }
            let body = &bytes[4..4 + size as usize];
            let crc = u32::from_be_bytes(bytes[4 + size as usize..].try_into().expect("four bytes"));
            if crc32().checksum(body) != crc {
                return Err(corrupt(format!("the checksum of {path} does not match")));
            }
            bitmap(body)?
        }
        StorageType::AbsolutePath => return Err(corrupt("a vector at an absolute path (Tverr writes none)")),
    };
    if deleted.len() != descriptor.cardinality as u64 {
        return Err(corrupt(format!("{} rows where the log says {}", deleted.len(), descriptor.cardinality)));
    }
    Ok(deleted)
}

/// Writes vectors into one new file in the table's directory; their descriptors, in order.
pub(crate) async fn write(store: &Arc<dyn ObjectStore>, vectors: &[&RoaringTreemap]) -> Result<Vec<DeletionVectorDescriptor>, StoreError> {
    let uuid = uuid::Uuid::new_v4();
    let mut out = vec![1u8];
    let mut descriptors = Vec::with_capacity(vectors.len());
    for deleted in vectors {
        let mut body = MAGIC.to_le_bytes().to_vec();
        deleted.serialize_into(&mut body).map_err(|e| corrupt(e.to_string()))?;
        let offset = i32::try_from(out.len()).map_err(|_| corrupt("more than 2 GiB of vectors in one file"))?;
        let size = i32::try_from(body.len()).map_err(|_| corrupt("a vector of more than 2 GiB"))?;
        out.extend_from_slice(&(size as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32().checksum(&body).to_be_bytes());
        descriptors.push(DeletionVectorDescriptor {
            storage_type: StorageType::UuidRelativePath,
            path_or_inline_dv: z85::encode(uuid.as_bytes()),
            offset: Some(offset),
            size_in_bytes: size,
            cardinality: deleted.len() as i64,
        });
    }
    let path = Path::parse(format!("deletion_vector_{uuid}.bin")).map_err(|e| corrupt(e.to_string()))?;
    store.put(&path, PutPayload::from(Bytes::from(out))).await.map_err(|e| StoreError::Read(e.to_string()))?;
    Ok(descriptors)
}

/// The deleted rows of every live file of a snapshot that has any, by the file's path.
pub(crate) async fn of_files(
    store: &Arc<dyn ObjectStore>,
    files: impl IntoIterator<Item = (String, Option<DeletionVectorDescriptor>)>,
) -> Result<HashMap<String, RoaringTreemap>, StoreError> {
    let mut out = HashMap::new();
    for (path, descriptor) in files {
        if let Some(d) = descriptor {
            out.insert(path, read(store, &d).await?);
        }
    }
    Ok(out)
}

/// The protocol a table needs for deletion vectors, when it does not have it yet: reader version
/// 3 and writer version 7 with the `deletionVectors` feature, keeping every feature the table's
/// versions had (a legacy version's features listed by name, as the protocol requires).
pub(crate) fn protocol_with_vectors(protocol: &Protocol) -> Result<Option<Protocol>, StoreError> {
    let mut value = serde_json::to_value(protocol).map_err(|e| corrupt(e.to_string()))?;
    let names = |v: &serde_json::Value, key: &str| -> Option<Vec<String>> {
        v.get(key).and_then(|f| f.as_array()).map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
    };
    let version = |key: &str| value.get(key).and_then(serde_json::Value::as_i64).unwrap_or(1);
    let (reader_version, writer_version) = (version("minReaderVersion"), version("minWriterVersion"));
    let mut reader = names(&value, "readerFeatures").unwrap_or_else(|| match reader_version {
        2 => vec!["columnMapping".into()],
        _ => Vec::new(),
    });
    let mut writer = names(&value, "writerFeatures").unwrap_or_else(|| {
        let implied = [
            (2, "appendOnly"),
            (2, "invariants"),
            (3, "checkConstraints"),
            (4, "changeDataFeed"),
            (4, "generatedColumns"),
            (5, "columnMapping"),
            (6, "identityColumns"),
        ];
        implied.iter().filter(|(v, _)| writer_version >= *v).map(|(_, f)| f.to_string()).collect()
    });
    const FEATURE: &str = "deletionVectors";
    if reader.iter().any(|f| f == FEATURE) && writer.iter().any(|f| f == FEATURE) {
        return Ok(None);
    }
    for list in [&mut reader, &mut writer] {
        if !list.iter().any(|f| f == FEATURE) {
            list.push(FEATURE.into());
        }
    }
    value = serde_json::json!({
        "minReaderVersion": 3,
        "minWriterVersion": 7,
        "readerFeatures": reader,
        "writerFeatures": writer,
    });
    serde_json::from_value(value).map(Some).map_err(|e| corrupt(format!("the table's protocol cannot take deletion vectors: {e}")))
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;

    #[tokio::test]
    async fn vectors_written_read_back_and_a_damaged_one_is_refused() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let a: RoaringTreemap = [0u64, 5, 1 << 33].into_iter().collect();
        let b: RoaringTreemap = (100u64..10_000).collect();
        let written = write(&store, &[&a, &b]).await.unwrap();
        assert_eq!(written.len(), 2);
        assert_eq!(written[0].path_or_inline_dv, written[1].path_or_inline_dv, "one file for all of a version's vectors");
        assert_eq!(written[0].offset, Some(1), "after the version byte");
        assert_eq!(read(&store, &written[0]).await.unwrap(), a);
        assert_eq!(read(&store, &written[1]).await.unwrap(), b);

        let mut wrong = written[1].clone();
        wrong.cardinality += 1;
        assert!(read(&store, &wrong).await.unwrap_err().to_string().contains("the log says"));
        let mut shifted = written[1].clone();
        shifted.offset = Some(2);
        assert!(read(&store, &shifted).await.is_err());

        // One flipped byte in the bitmap fails the checksum.
        let path = relative_path(&written[0]).unwrap();
        let mut bytes = store.get(&path).await.unwrap().bytes().await.unwrap().to_vec();
        bytes[12] ^= 0x40;
        store.put(&path, PutPayload::from(bytes)).await.unwrap();
        assert!(read(&store, &written[0]).await.unwrap_err().to_string().contains("checksum"));

        let mut absolute = written[0].clone();
        absolute.storage_type = StorageType::AbsolutePath;
        assert!(read(&store, &absolute).await.is_err());
        let mut short = written[0].clone();
        short.path_or_inline_dv = "abc".into();
        assert!(read(&store, &short).await.is_err());
    }

    #[test]
    fn a_legacy_protocol_gains_the_feature_and_keeps_its_own() {
        let legacy: Protocol = serde_json::from_value(serde_json::json!({"minReaderVersion": 1, "minWriterVersion": 2})).unwrap();
        let upgraded = protocol_with_vectors(&legacy).unwrap().expect("an upgrade");
        let json = serde_json::to_value(&upgraded).unwrap();
        assert_eq!(json["minReaderVersion"], 3);
        assert_eq!(json["minWriterVersion"], 7);
        assert_eq!(json["readerFeatures"], serde_json::json!(["deletionVectors"]));
        assert_eq!(json["writerFeatures"], serde_json::json!(["appendOnly", "invariants", "deletionVectors"]));
        assert!(protocol_with_vectors(&upgraded).unwrap().is_none(), "nothing to do twice");
    }
}
