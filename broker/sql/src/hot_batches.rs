//! The published rows of a partition's hot buffer as Arrow batches. Each publish adds a small
//! batch; batches are merged in tiers (`FANOUT` batches of one tier become one batch of the
//! next), so queries see a bounded number of batches while each row is copied once per tier
//! rather than every time the whole buffer used to be merged into one.

use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;

/// Batches of one tier merged together.
const FANOUT: usize = 8;

/// Tier of a batch rebuilt from the whole buffer: it is never merged again.
const BASE_TIER: u8 = u8::MAX;

#[derive(Debug, Default)]
pub struct HotBatches {
    batches: Vec<RecordBatch>,
    tiers: Vec<u8>,
    /// Schema version every batch is built under.
    version: u64,
}

impl HotBatches {
    pub fn batches(&self) -> &[RecordBatch] {
        &self.batches
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// Drop every batch (built under `version` from now on).
    pub fn reset(&mut self, version: u64) {
        self.batches.clear();
        self.tiers.clear();
        self.version = version;
    }

    /// Replace everything by `batch`, a rebuild of all published rows under `version`.
    pub fn replace(&mut self, batch: RecordBatch, version: u64) {
        self.reset(version);
        self.batches.push(batch);
        self.tiers.push(BASE_TIER);
    }

    /// Append the next rows (built under the current version), merging full tiers.
    pub fn push(&mut self, batch: RecordBatch) -> Result<(), ArrowError> {
        self.batches.push(batch);
        self.tiers.push(0);
        while let Some(tier) = self.full_tier() {
            let from = self.batches.len() - FANOUT;
            let merged = concat_batches(&self.batches[from].schema(), &self.batches[from..])?;
            self.batches.truncate(from);
            self.tiers.truncate(from);
            self.batches.push(merged);
            self.tiers.push(tier + 1);
        }
        Ok(())
    }

    /// The tier of the last `FANOUT` batches when they all share one mergeable tier.
    fn full_tier(&self) -> Option<u8> {
        let from = self.tiers.len().checked_sub(FANOUT)?;
        let tier = self.tiers[from];
        (tier < BASE_TIER - 1 && self.tiers[from..].iter().all(|t| *t == tier)).then_some(tier)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;

    fn batch(from: i64, rows: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from_iter_values(from..from + rows))],
        )
        .unwrap()
    }

    fn values(h: &HotBatches) -> Vec<i64> {
        h.batches()
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect()
    }

    #[test]
    fn merges_full_tiers_and_keeps_row_order() {
        let mut h = HotBatches::default();
        let mut next = 0;
        for pushes in 1..=600usize {
            h.push(batch(next, 3)).unwrap();
            next += 3;
            // Batch count is the number of pushes written in base FANOUT, digit by digit.
            let mut digits = 0;
            let mut p = pushes;
            while p > 0 {
                digits += p % FANOUT;
                p /= FANOUT;
            }
            assert_eq!(h.batches().len(), digits, "after {pushes} pushes");
        }
        assert_eq!(values(&h), (0..next).collect::<Vec<_>>());
        assert_eq!(h.rows(), next as usize);
    }

    #[test]
    fn a_rebuilt_base_is_never_merged_again() {
        let mut h = HotBatches::default();
        h.replace(batch(0, 100), 4);
        for i in 0..FANOUT as i64 {
            h.push(batch(100 + i, 1)).unwrap();
        }
        assert_eq!(h.batches().len(), 2);
        assert_eq!(h.batches()[0].num_rows(), 100);
        assert_eq!(h.version(), 4);
        assert_eq!(values(&h), (0..100 + FANOUT as i64).collect::<Vec<_>>());
        h.reset(5);
        assert!(h.batches().is_empty());
        assert_eq!(h.version(), 5);
    }
}
