//! Byte ranges of data files kept in memory for reading.
//!
//! A query over a Delta table fetches whole Parquet column chunks (`get_ranges`) even when a
//! `LIMIT` needs a few rows of them; without a cache each request reads them again from
//! storage (a copy out of the page cache, or an S3 GET) into freshly zeroed buffers. This store
//! wraps the lake's object store for the query engine and keeps the ranges it read.
//!
//! A cached range is served only after asking the store that the file still exists with the same
//! e-tag and size (`head`: a `stat` on local disk, one HEAD request on S3), so a file removed by
//! an erasure's vacuum, or rewritten, is never served from memory. Everything else (writes,
//! listings, whole-object reads such as the Delta log) passes through untouched.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// What is cached of one file: the version it belongs to and its ranges.
struct File {
    e_tag: Option<String>,
    size: u64,
    ranges: HashMap<Range<u64>, Bytes>,
    bytes: usize,
}

#[derive(Default)]
struct Ranges {
    files: HashMap<Path, File>,
    /// Files in the order they were first cached; the oldest go first when over capacity.
    order: VecDeque<Path>,
    bytes: usize,
}

/// An object store that keeps the byte ranges read with `get_ranges`, up to a capacity.
pub struct CachedRanges {
    inner: Arc<dyn ObjectStore>,
    capacity: usize,
    state: Mutex<Ranges>,
}

impl CachedRanges {
    /// Wraps `inner`, keeping at most `capacity` bytes.
    pub fn new(inner: Arc<dyn ObjectStore>, capacity: usize) -> Self {
        Self { inner, capacity, state: Mutex::default() }
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.state.lock().expect("cache lock").bytes
    }

    /// The cached ranges of `location` if it is still the same file, and the ranges not cached.
    fn lookup(&self, location: &Path, meta: &ObjectMeta, ranges: &[Range<u64>]) -> Vec<Option<Bytes>> {
        let mut state = self.state.lock().expect("cache lock");
        let stale = state.files.get(location).is_some_and(|f| f.e_tag != meta.e_tag || f.size != meta.size);
        if stale {
            if let Some(f) = state.files.remove(location) {
                state.bytes -= f.bytes;
            }
            state.order.retain(|p| p != location);
        }
        let file = state.files.get(location);
        ranges.iter().map(|r| file.and_then(|f| f.ranges.get(r).cloned())).collect()
    }

    fn insert(&self, location: &Path, meta: &ObjectMeta, fetched: &[(Range<u64>, Bytes)]) {
        let mut state = self.state.lock().expect("cache lock");
        let state = &mut *state;
        if !state.files.contains_key(location) {
            state.order.push_back(location.clone());
        }
        let file = state.files.entry(location.clone()).or_insert_with(|| File {
            e_tag: meta.e_tag.clone(),
            size: meta.size,
            ranges: HashMap::new(),
            bytes: 0,
        });
        for (range, bytes) in fetched {
            if file.ranges.insert(range.clone(), bytes.clone()).is_none() {
                file.bytes += bytes.len();
                state.bytes += bytes.len();
            }
        }
        while state.bytes > self.capacity {
            let Some(oldest) = state.order.pop_front() else { break };
            if let Some(f) = state.files.remove(&oldest) {
                state.bytes -= f.bytes;
            }
        }
    }
}

impl fmt::Debug for CachedRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedRanges").field("inner", &self.inner).field("capacity", &self.capacity).finish()
    }
}

impl fmt::Display for CachedRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CachedRanges({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for CachedRanges {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        if self.capacity == 0 {
            return self.inner.get_ranges(location, ranges).await;
        }
        // Asked every time: a file removed (erasure, vacuum) or rewritten is never served.
        let meta = self.inner.head(location).await?;
        let mut found = self.lookup(location, &meta, ranges);
        let missing: Vec<Range<u64>> = ranges.iter().zip(&found).filter(|(_, b)| b.is_none()).map(|(r, _)| r.clone()).collect();
        tverr_core::metrics::cache("read_ranges", missing.is_empty());
        if !missing.is_empty() {
            let fetched = self.inner.get_ranges(location, &missing).await?;
            let pairs: Vec<(Range<u64>, Bytes)> = missing.into_iter().zip(fetched).collect();
            self.insert(location, &meta, &pairs);
            let mut pairs = pairs.into_iter();
            for slot in found.iter_mut().filter(|b| b.is_none()) {
                *slot = pairs.next().map(|(_, b)| b);
            }
        }
        Ok(found.into_iter().map(Option::unwrap_or_default).collect())
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
// `get_ranges` takes a slice of ranges; the tests ask for one.
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;

    #[tokio::test]
    async fn ranges_are_kept_and_never_outlive_their_file() {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let cache = CachedRanges::new(inner.clone(), 1 << 20);
        let path = Path::from("t/part-0.parquet");
        inner.put(&path, PutPayload::from_static(b"0123456789")).await.unwrap();

        let got = cache.get_ranges(&path, &[0..4, 6..10]).await.unwrap();
        assert_eq!(got, vec![Bytes::from_static(b"0123"), Bytes::from_static(b"6789")]);
        assert_eq!(cache.held(), 8);
        // A hit and a miss in one call keep their order.
        let got = cache.get_ranges(&path, &[2..5, 0..4]).await.unwrap();
        assert_eq!(got, vec![Bytes::from_static(b"234"), Bytes::from_static(b"0123")]);
        assert_eq!(cache.held(), 11);

        // Rewritten under the same name: the old bytes are dropped, the new ones read.
        inner.put(&path, PutPayload::from_static(b"abcdefghij")).await.unwrap();
        assert_eq!(cache.get_ranges(&path, &[0..4]).await.unwrap(), vec![Bytes::from_static(b"abcd")]);
        assert_eq!(cache.held(), 4);

        // Deleted (an erasure's vacuum): the read fails as it would without the cache.
        inner.delete(&path).await.unwrap();
        assert!(matches!(cache.get_ranges(&path, &[0..4]).await, Err(object_store::Error::NotFound { .. })));
    }

    #[tokio::test]
    async fn the_oldest_files_go_first_when_over_capacity() {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let cache = CachedRanges::new(inner.clone(), 10);
        for name in ["a", "b", "c"] {
            inner.put(&Path::from(name), PutPayload::from_static(b"01234567")).await.unwrap();
            cache.get_ranges(&Path::from(name), &[0..4]).await.unwrap();
        }
        assert_eq!(cache.held(), 8, "a was dropped for c");
        let state = cache.state.lock().unwrap();
        assert!(!state.files.contains_key(&Path::from("a")));
        assert!(state.files.contains_key(&Path::from("b")) && state.files.contains_key(&Path::from("c")));
    }
}
