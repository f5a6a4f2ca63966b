//! The DataFusion tables of a columnar topic: `T` (hot and cold), `T_hot`, `T_cold`, and the
//! stored form with `_tombstone` that `T_latest` is defined over. A scan takes one snapshot per
//! partition and plans the sealed files (Parquet, pruned by statistics) and the hot batches
//! from it, so the boundary between them has no gap and no duplicate.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{new_null_array, ArrayRef};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::Session;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::{MemTable, TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::ExecutionPlan;

use crate::schema::{self, TOMBSTONE_INDEX};
use crate::store::Topic;

/// Which records a table shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    All,
    Hot,
    Cold,
}

#[derive(Debug)]
pub struct TopicTable {
    topic: Arc<Topic>,
    part: Part,
    /// The stored schema when the table was made; every scan answers in it.
    stored: SchemaRef,
    /// What the table shows: `stored`, or `stored` without `_tombstone`.
    shown: SchemaRef,
    with_tombstone: bool,
}

impl TopicTable {
    pub fn new(topic: Arc<Topic>, part: Part, with_tombstone: bool) -> Self {
        let stored = schema::scan_form(&topic.schema.read().stored_arrow());
        let shown = if with_tombstone {
            stored.clone()
        } else {
            schema::visible(&stored)
        };
        TopicTable {
            topic,
            part,
            stored,
            shown,
            with_tombstone,
        }
    }

    /// A shown column's position in the stored schema.
    fn stored_index(&self, shown: usize) -> usize {
        if self.with_tombstone || shown < TOMBSTONE_INDEX {
            shown
        } else {
            shown + 1
        }
    }
}

/// `batch` in `target`'s layout: columns cast to the (possibly widened) types, and columns the
/// batch predates filled with nulls.
fn adapt(batch: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch> {
    if batch.schema() == *target {
        return Ok(batch.clone());
    }
    let columns = target
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
            Some(c) => Ok(cast(c, f.data_type())?),
            None => Ok(new_null_array(f.data_type(), batch.num_rows())),
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    Ok(RecordBatch::try_new(target.clone(), columns)?)
}

#[async_trait]
impl TableProvider for TopicTable {
    fn schema(&self) -> SchemaRef {
        self.shown.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Filters prune files and row groups; DataFusion still applies them to every row.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let projection: Vec<usize> = match projection {
            Some(p) => p.iter().map(|i| self.stored_index(*i)).collect(),
            None => (0..self.shown.fields().len())
                .map(|i| self.stored_index(i))
                .collect(),
        };
        let snapshots: Vec<_> = self
            .topic
            .partitions()
            .iter()
            .map(|p| p.snapshot())
            .collect();
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();

        if self.part != Part::Hot {
            let urls = snapshots
                .iter()
                .flat_map(|s| s.cold.iter())
                .map(|f| ListingTableUrl::parse(f.path.to_string_lossy()))
                .collect::<Result<Vec<_>>>()?;
            if !urls.is_empty() {
                let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                    .with_file_extension(".parquet");
                let config = ListingTableConfig::new_with_multi_paths(urls)
                    .with_listing_options(options)
                    .with_schema(self.stored.clone());
                let files = ListingTable::try_new(config)?;
                inputs.push(files.scan(state, Some(&projection), filters, limit).await?);
            }
        }
        if self.part != Part::Cold {
            let partitions = snapshots
                .iter()
                .filter(|s| !s.hot.is_empty())
                .map(|s| {
                    s.hot
                        .iter()
                        .map(|b| adapt(b, &self.stored))
                        .collect::<Result<Vec<_>>>()
                })
                .collect::<Result<Vec<_>>>()?;
            if !partitions.is_empty() {
                let hot = MemTable::try_new(self.stored.clone(), partitions)?;
                inputs.push(hot.scan(state, Some(&projection), filters, limit).await?);
            }
        }
        if inputs.is_empty() {
            let schema = Arc::new(
                self.stored
                    .project(&projection)
                    .map_err(DataFusionError::from)?,
            );
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        UnionExec::try_new(inputs)
    }
}
