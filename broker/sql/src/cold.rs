//! Sealed Parquet files of one partition: `<start>-<end>.parquet` holds the records of offsets
//! `[start, end)`. The name is the checkpoint: a file appears only through an atomic rename of
//! a fully written and fsynced temporary file, so after any crash the files present are exactly
//! the durable data and the largest `end` is where indexing resumes.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, BooleanArray};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{Int64Type, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::schema::OFFSET;
use crate::SqlError;

const EXT: &str = ".parquet";
const TMP_EXT: &str = ".parquet.tmp";

/// One sealed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColdFile {
    pub path: PathBuf,
    pub start: i64,
    pub end: i64,
}

pub fn file_name(start: i64, end: i64) -> String {
    format!("{start:020}-{end:020}{EXT}")
}

pub fn parse_file_name(name: &str) -> Option<(i64, i64)> {
    let stem = name.strip_suffix(EXT)?;
    let (start, end) = stem.split_once('-')?;
    let (start, end) = (start.parse().ok()?, end.parse().ok()?);
    (start < end).then_some((start, end))
}

fn parquet_err(path: &Path, e: impl std::fmt::Display) -> SqlError {
    SqlError::Parquet {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// The files of a partition directory, by offset. Leftover temporary files (a crash mid-seal)
/// are removed, and of two files ending at the same offset (a crash while a retention rewrite
/// replaced one) the narrower, newer one is kept.
pub fn list(dir: &Path) -> Result<Vec<ColdFile>, SqlError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(SqlError::io(dir, e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| SqlError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(TMP_EXT) {
            fs::remove_file(entry.path()).map_err(|e| SqlError::io(&entry.path(), e))?;
        } else if let Some((start, end)) = parse_file_name(&name) {
            files.push(ColdFile {
                path: entry.path(),
                start,
                end,
            });
        }
    }
    files.sort_by_key(|f| (f.end, std::cmp::Reverse(f.start)));
    let mut kept: Vec<ColdFile> = Vec::with_capacity(files.len());
    for f in files {
        if kept.last().is_some_and(|k| k.end == f.end) {
            fs::remove_file(&f.path).map_err(|e| SqlError::io(&f.path, e))?;
        } else {
            kept.push(f);
        }
    }
    Ok(kept)
}

pub fn writer_properties(row_group_rows: usize) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(row_group_rows.max(1)))
        // Page-level min/max on every column: DataFusion prunes row groups and pages by
        // _offset and _timestamp (and any other column) with them.
        .set_statistics_enabled(EnabledStatistics::Page)
        .build()
}

fn sync_dir(dir: &Path) -> Result<(), SqlError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SqlError::io(dir, e))
}

/// Write `batches` as the file for `[start, end)`: temporary file, fsync, rename, fsync dir.
pub fn write(
    dir: &Path,
    start: i64,
    end: i64,
    schema: SchemaRef,
    batches: &[RecordBatch],
    props: WriterProperties,
) -> Result<ColdFile, SqlError> {
    fs::create_dir_all(dir).map_err(|e| SqlError::io(dir, e))?;
    let name = file_name(start, end);
    let path = dir.join(&name);
    let tmp = dir.join(format!("{name}.tmp"));
    let file = File::create(&tmp).map_err(|e| SqlError::io(&tmp, e))?;
    let mut writer =
        ArrowWriter::try_new(file, schema, Some(props)).map_err(|e| parquet_err(&tmp, e))?;
    for b in batches {
        writer.write(b).map_err(|e| parquet_err(&tmp, e))?;
    }
    let file = writer.into_inner().map_err(|e| parquet_err(&tmp, e))?;
    file.sync_all().map_err(|e| SqlError::io(&tmp, e))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(|e| SqlError::io(&path, e))?;
    sync_dir(dir)?;
    Ok(ColdFile { path, start, end })
}

/// The Arrow schema a file was written with.
pub fn read_schema(path: &Path) -> Result<SchemaRef, SqlError> {
    let file = File::open(path).map_err(|e| SqlError::io(path, e))?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| parquet_err(path, e))?;
    Ok(Arc::clone(builder.schema()))
}

/// Replace `file` by one holding only its records at or after `offset` (retention moved the
/// log start into the file). The new file is durable before the old one is removed.
pub fn rewrite_from(
    file: &ColdFile,
    offset: i64,
    props: WriterProperties,
) -> Result<ColdFile, SqlError> {
    let f = File::open(&file.path).map_err(|e| SqlError::io(&file.path, e))?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| parquet_err(&file.path, e))?;
    let schema = Arc::clone(builder.schema());
    let reader = builder.build().map_err(|e| parquet_err(&file.path, e))?;
    let mut kept = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| parquet_err(&file.path, e))?;
        let offsets = batch
            .column_by_name(OFFSET)
            .ok_or_else(|| parquet_err(&file.path, "no _offset column"))?
            .as_primitive::<Int64Type>();
        let keep: BooleanArray = offsets
            .iter()
            .map(|o| Some(o.is_some_and(|o| o >= offset)))
            .collect();
        kept.push(filter_record_batch(&batch, &keep).map_err(|e| parquet_err(&file.path, e))?);
    }
    let dir = file.path.parent().unwrap_or(Path::new("."));
    let new = write(dir, offset, file.end, schema, &kept, props)?;
    fs::remove_file(&file.path).map_err(|e| SqlError::io(&file.path, e))?;
    sync_dir(dir)?;
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort() {
        assert_eq!(parse_file_name(&file_name(5, 17)), Some((5, 17)));
        assert_eq!(parse_file_name("00-00.parquet"), None);
        assert_eq!(parse_file_name("x-1.parquet"), None);
        assert!(file_name(9, 10) < file_name(10, 11));
    }

    #[test]
    fn listing_cleans_temporaries_and_superseded_files() {
        let d = tempfile::tempdir().unwrap();
        for n in [file_name(0, 10), file_name(10, 20), file_name(15, 20)] {
            File::create(d.path().join(n)).unwrap();
        }
        File::create(d.path().join(format!("{}.tmp", file_name(20, 30)))).unwrap();
        let files = list(d.path()).unwrap();
        let ranges: Vec<(i64, i64)> = files.iter().map(|f| (f.start, f.end)).collect();
        assert_eq!(ranges, vec![(0, 10), (15, 20)]);
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 2);
    }
}
