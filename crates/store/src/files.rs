//! Reading a table's Parquet data files by byte ranges: from an object store ([`FileReader`],
//! the async reader), or in place on a local disk ([`LocalFile`], the synchronous reader). The
//! index's writes and the look-up's reads both use them.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, new_null_array};
use arrow::compute::cast;
use arrow::datatypes::SchemaRef;

use object_store::ObjectStore;
use object_store::path::Path;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderBuilder, ArrowReaderOptions, RowSelection};
use parquet::arrow::async_reader::{AsyncFileReader, MetadataSuffixFetch};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use crate::StoreError;

/// A Parquet file on the object store, read by byte ranges.
#[derive(Debug, Clone)]
pub(crate) struct FileReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
}

impl FileReader {
    pub(crate) fn new(store: Arc<dyn ObjectStore>, path: Path) -> Self {
        Self { store, path }
    }
}

pub(crate) fn parquet_error(e: object_store::Error) -> parquet::errors::ParquetError {
    parquet::errors::ParquetError::External(Box::new(e))
}

impl AsyncFileReader for FileReader {
    fn get_bytes(&mut self, range: std::ops::Range<u64>) -> futures::future::BoxFuture<'_, parquet::errors::Result<bytes::Bytes>> {
        Box::pin(
            async move { object_store::ObjectStoreExt::get_range(self.store.as_ref(), &self.path, range).await.map_err(parquet_error) },
        )
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> futures::future::BoxFuture<'_, parquet::errors::Result<Vec<bytes::Bytes>>> {
        Box::pin(async move { self.store.get_ranges(&self.path, &ranges).await.map_err(parquet_error) })
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> futures::future::BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        metadata_by_suffix::<Self>(self, options)
    }
}

/// A file's Parquet footer, fetched as a suffix of the file.
pub(crate) fn metadata_by_suffix<'a, R: Send>(
    reader: &'a mut R,
    options: Option<&'a ArrowReaderOptions>,
) -> futures::future::BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>>
where
    &'a mut R: MetadataSuffixFetch,
{
    Box::pin(async move {
        let metadata = ParquetMetaDataReader::new().with_arrow_reader_options(options).load_via_suffix_and_finish(reader).await?;
        Ok(Arc::new(metadata))
    })
}

impl MetadataSuffixFetch for &mut FileReader {
    fn fetch_suffix(&mut self, suffix: usize) -> futures::future::BoxFuture<'_, parquet::errors::Result<bytes::Bytes>> {
        let options = object_store::GetOptions { range: Some(object_store::GetRange::Suffix(suffix as u64)), ..Default::default() };
        Box::pin(async move {
            let response = self.store.get_opts(&self.path, options).await.map_err(parquet_error)?;
            response.bytes().await.map_err(parquet_error)
        })
    }
}

/// A Parquet data file of a table on local disk, read in place. A look-up reads a few pages,
/// which the page cache serves in microseconds: reading them on the calling task spares the two
/// thread switches of a trip through the blocking pool (the local object store's way). The file
/// is opened anew for every look-up, so a file removed by an erasure's vacuum is never read.
pub(crate) struct LocalFile {
    path: Arc<std::path::PathBuf>,
    file: Arc<std::fs::File>,
    len: u64,
}

impl LocalFile {
    pub(crate) fn open(path: std::path::PathBuf) -> Result<Self, StoreError> {
        let opened = std::fs::File::open(&path).and_then(|file| Ok((file.metadata()?.len(), file)));
        let (len, file) = opened.map_err(|e| StoreError::Read(format!("{}: {e}", path.display())))?;
        Ok(Self { path: Arc::new(path), file: Arc::new(file), len })
    }

    fn read(&self, range: std::ops::Range<u64>) -> parquet::errors::Result<bytes::Bytes> {
        use std::os::unix::fs::FileExt;
        let len = usize::try_from(range.end.saturating_sub(range.start))
            .map_err(|_| parquet::errors::ParquetError::General("range too large".into()))?;
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, range.start).map_err(|e| self.error(e))?;
        Ok(buf.into())
    }

    fn error(&self, e: std::io::Error) -> parquet::errors::ParquetError {
        parquet::errors::ParquetError::External(format!("{}: {e}", self.path.display()).into())
    }
}

impl parquet::file::reader::Length for LocalFile {
    fn len(&self) -> u64 {
        self.len
    }
}

/// Reads a local data file synchronously with `pread`: a look-up's pages are in the page cache,
/// and the synchronous reader spares the async reader's futures and buffering for a few pages.
impl parquet::file::reader::ChunkReader for LocalFile {
    type T = LocalRead;

    fn get_read(&self, start: u64) -> parquet::errors::Result<LocalRead> {
        Ok(LocalRead { file: self.file.clone(), path: self.path.clone(), at: start })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        self.read(start..start + length as u64)
    }
}

/// A sequential reader of a local file from a position, for [`LocalFile`]'s `ChunkReader`.
pub(crate) struct LocalRead {
    file: Arc<std::fs::File>,
    path: Arc<std::path::PathBuf>,
    at: u64,
}

impl std::io::Read for LocalRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.file.read_at(buf, self.at).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))?;
        self.at += n as u64;
        Ok(n)
    }
}

/// A reader of only the row groups, rows and (with a projection) columns asked for, whether it
/// reads synchronously or not.
pub(crate) fn select<T>(
    builder: ArrowReaderBuilder<T>,
    groups: Vec<usize>,
    rows: RowSelection,
    projection: Option<ProjectionMask>,
) -> ArrowReaderBuilder<T> {
    let builder = builder.with_row_groups(groups).with_row_selection(rows);
    match projection {
        Some(p) => builder.with_projection(p),
        None => builder,
    }
}

pub(crate) fn object_path(path: &str) -> Result<Path, StoreError> {
    Path::from_url_path(path).map_err(|e| StoreError::Read(format!("bad data file path: {e}")))
}

pub(crate) fn read_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Read(e.to_string())
}

/// A batch in the table's schema: columns by name, cast where the file's type differs, null
/// where the file predates the column.
pub(crate) fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, StoreError> {
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
            Some(c) => cast(c, f.data_type()),
            None => Ok(new_null_array(f.data_type(), batch.num_rows())),
        })
        .collect::<Result<_, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}
