//! SQL over columnar topics.
//!
//! Owns the inference of typed Arrow columns from JSON values ([`schema`]), the hot Arrow
//! buffer per partition and its sealing into Parquet files ([`store`], [`cold`]), the
//! columnar [`Indexer`](chronik_index::Indexer) the pipeline feeds ([`ColumnarIndexer`]), and the
//! DataFusion tables and query execution ([`SqlEngine`]), and the PostgreSQL wire protocol over
//! them ([`pg`]). Nothing here runs on the produce path.

pub mod cold;
mod config;
mod engine;
mod error;
mod hot_batches;
mod indexer;
mod json_fields;
mod metrics;
pub mod pg;
pub mod rows;
pub mod schema;
pub mod store;
mod table;

pub use config::SqlConfig;
pub use engine::{
    table_name, Answer, ColumnInfo, Format, Placement, Query, QueryResult, SqlEngine, TableInfo,
};
pub use error::SqlError;
pub use indexer::ColumnarIndexer;
pub use metrics::{metrics, SqlMetrics};
pub use store::Store;

/// The index kind name: metrics label and directory name.
pub const KIND: &str = "columnar";

/// The store, its indexer and its engine, sharing one store.
pub fn open(config: SqlConfig) -> (Arc<Store>, Arc<ColumnarIndexer>, Arc<SqlEngine>) {
    let store = Arc::new(Store::new(config));
    (
        store.clone(),
        Arc::new(ColumnarIndexer::new(store.clone())),
        Arc::new(SqlEngine::new(store)),
    )
}

use std::sync::Arc;
