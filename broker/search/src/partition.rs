//! One partition's Tantivy index: the writer, a manually reloaded reader, and the checkpoint.
//!
//! The checkpoint (the next offset to index) is the payload of each Tantivy commit, so the
//! index and its checkpoint become durable in the same atomic step. Publishing is a commit
//! followed by a reader reload: Tantivy has no cheaper way to make a document visible, and a
//! commit writes a small new segment (merged later by the log merge policy, which suits an
//! append-only stream) rather than rewriting existing ones.

use std::ops::Bound;
use std::path::{Path, PathBuf};

use chronik_index::RecordRun;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tantivy::directory::MmapDirectory;
use tantivy::indexer::IndexWriterOptions;
use tantivy::query::RangeQuery;
use tantivy::schema::Term;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, Searcher};

use crate::analyzer;
use crate::error::SearchError;
use crate::schema::{self, Fields, TextPaths};

/// Heap of one partition's writer (Tantivy's minimum is 15 MB per indexing thread).
const WRITER_HEAP_BYTES: usize = 24 << 20;

#[derive(Debug, Serialize, Deserialize)]
struct Checkpoint {
    next_offset: i64,
}

#[derive(Debug)]
struct Progress {
    /// Offset after the last record handed to the writer.
    indexed: i64,
    /// Offset after the last record in a commit (durable and visible).
    committed: i64,
    /// Uncommitted additions or deletions exist.
    dirty: bool,
}

pub struct PartitionIndex {
    pub topic: String,
    pub partition: i32,
    pub dir: PathBuf,
    pub fields: Fields,
    index: Index,
    text_paths: TextPaths,
    compacted: bool,
    writer: Mutex<IndexWriter>,
    reader: IndexReader,
    progress: Mutex<Progress>,
}

impl std::fmt::Debug for PartitionIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionIndex")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// How a partition's index is opened.
#[derive(Debug, Clone)]
pub struct PartitionSettings {
    pub text_paths: TextPaths,
    /// cleanup.policy includes compact: a newer value for a key replaces older documents.
    pub compacted: bool,
}

impl PartitionIndex {
    /// Open or create the index in `dir`; returns it with the offset to resume from.
    pub fn open(
        dir: &Path,
        topic: &str,
        partition: i32,
        settings: PartitionSettings,
        log_start: i64,
    ) -> Result<(PartitionIndex, i64), SearchError> {
        std::fs::create_dir_all(dir).map_err(|source| SearchError::Io {
            what: format!("creating {}", dir.display()),
            source,
        })?;
        let (schema, fields) = schema::build();
        let directory = MmapDirectory::open(dir)?;
        let index = Index::open_or_create(directory, schema)?;
        analyzer::register_indexing(index.tokenizers());
        analyzer::register_fast(index.fast_field_tokenizer());
        let metas = index.load_metas()?;
        let checkpoint = match metas.payload.as_deref() {
            Some(p) => {
                serde_json::from_str::<Checkpoint>(p)
                    .map_err(|e| {
                        SearchError::Tantivy(tantivy::TantivyError::InternalError(format!(
                            "unreadable checkpoint in {}: {e}",
                            dir.display()
                        )))
                    })?
                    .next_offset
            }
            None => log_start,
        };
        // One indexing and one merge thread per partition: a broker indexes many partitions
        // at once, and the pipeline already spreads them over its workers.
        let writer: IndexWriter = index.writer_with_options(
            IndexWriterOptions::builder()
                .memory_budget_per_thread(WRITER_HEAP_BYTES)
                .num_worker_threads(1)
                .num_merge_threads(1)
                .build(),
        )?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let resume = checkpoint.max(log_start);
        let part = PartitionIndex {
            topic: topic.to_string(),
            partition,
            dir: dir.to_path_buf(),
            fields,
            index,
            text_paths: settings.text_paths,
            compacted: settings.compacted,
            writer: Mutex::new(writer),
            reader,
            progress: Mutex::new(Progress {
                indexed: resume,
                committed: checkpoint,
                dirty: false,
            }),
        };
        if log_start > 0 {
            // The log may have moved on while the index was closed (retention, DeleteRecords):
            // forget what the log no longer has.
            part.forget_before(log_start)?;
            part.commit()?;
        }
        Ok((part, resume))
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Hand a run to the writer. Records below what is already indexed are skipped (replay).
    pub fn add(&self, run: &RecordRun<'_>) -> Result<(), SearchError> {
        let mut progress = self.progress.lock();
        if run.next_offset <= progress.indexed {
            return Ok(());
        }
        let writer = self.writer.lock();
        let mut analyzer = analyzer::english_token_counter();
        for record in run.records.iter().filter(|r| r.offset >= progress.indexed) {
            if self.compacted {
                if let Some(key) = &record.key {
                    writer.delete_term(Term::from_field_bytes(self.fields.key, key));
                }
            }
            let Some(value) = &record.value else {
                continue;
            };
            let doc = schema::document(
                &self.fields,
                &self.text_paths,
                &mut analyzer,
                self.partition,
                record.offset,
                record.timestamp,
                record.key.as_deref(),
                value,
            );
            writer.add_document(doc)?;
        }
        progress.indexed = run.next_offset;
        progress.dirty = true;
        Ok(())
    }

    /// Delete every document below `offset`.
    pub fn forget_before(&self, offset: i64) -> Result<(), SearchError> {
        let query = RangeQuery::new(
            Bound::Unbounded,
            Bound::Excluded(Term::from_field_i64(self.fields.offset, offset)),
        );
        self.writer.lock().delete_query(Box::new(query))?;
        let mut progress = self.progress.lock();
        progress.dirty = true;
        if progress.indexed < offset {
            progress.indexed = offset;
        }
        Ok(())
    }

    /// Commit with the checkpoint and make the commit visible; returns the checkpoint.
    pub fn commit(&self) -> Result<i64, SearchError> {
        let mut progress = self.progress.lock();
        if !progress.dirty {
            return Ok(progress.committed);
        }
        let next_offset = progress.indexed;
        {
            let mut writer = self.writer.lock();
            let mut prepared = writer.prepare_commit()?;
            let payload = serde_json::to_string(&Checkpoint { next_offset })
                .map_err(|e| SearchError::Task(e.to_string()))?;
            prepared.set_payload(&payload);
            prepared.commit()?;
        }
        self.reader.reload()?;
        progress.committed = next_offset;
        progress.dirty = false;
        Ok(next_offset)
    }

    pub fn checkpoint(&self) -> i64 {
        self.progress.lock().committed
    }

    /// Resume point: everything handed to the writer, committed or not.
    pub fn indexed(&self) -> i64 {
        self.progress.lock().indexed
    }

    pub fn searcher(&self) -> Searcher {
        self.reader.searcher()
    }
}
