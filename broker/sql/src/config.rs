use std::path::PathBuf;
use std::time::Duration;

/// Settings of the columnar store and the SQL engine.
#[derive(Debug, Clone)]
pub struct SqlConfig {
    /// Root of the Parquet files: `<dir>/<topic>/<partition>/<start>-<end>.parquet`.
    pub dir: PathBuf,
    /// A partition's hot buffer is sealed into a Parquet file once it holds this many rows...
    pub seal_rows: usize,
    /// ...or this many bytes...
    pub seal_bytes: usize,
    /// ...or its oldest row is this old.
    pub seal_age: Duration,
    /// Budget for all hot buffers of the node; past it the partition being indexed seals early.
    pub hot_buffer_bytes: usize,
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
    /// Rows returned when a request gives no `limit`.
    pub default_limit: usize,
    /// Query timeout when a request gives no `timeout_ms`.
    pub default_timeout: Duration,
    /// Threads of the query runtime (queries never run on the broker's own threads).
    pub query_threads: usize,
}

impl SqlConfig {
    /// Defaults, with files under `dir` (made absolute: DataFusion addresses files by URL).
    pub fn new(dir: PathBuf) -> Self {
        SqlConfig {
            dir: std::path::absolute(&dir).unwrap_or(dir),
            seal_rows: 1_000_000,
            seal_bytes: 128 * 1024 * 1024,
            seal_age: Duration::from_secs(300),
            hot_buffer_bytes: 1024 * 1024 * 1024,
            row_group_rows: 128 * 1024,
            default_limit: 10_000,
            default_timeout: Duration::from_secs(30),
            query_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}
