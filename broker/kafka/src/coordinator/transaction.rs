//! The state machine of one transactional id (Kafka's `TransactionMetadata`), without I/O.
//!
//! ```text
//!            InitProducerId            AddPartitions/AddOffsets          EndTxn
//!   (none) ----------------> Empty ---------------------------> Ongoing ------> PrepareCommit --> CompleteCommit
//!                              ^                                   |   \------> PrepareAbort  --> CompleteAbort
//!                              |  InitProducerId (epoch bump)      |  timeout / InitProducerId:
//!                              +-- CompleteCommit/CompleteAbort    +-> epoch bump, PrepareAbort (fences the producer)
//! ```
//!
//! Every accepted step is persisted by the runtime before it is answered. A prepared state is
//! the coordinator's promise: once PrepareCommit/PrepareAbort is durable, the markers are
//! written to every partition of the transaction and the state becomes Complete, after a
//! restart too. Fencing follows Kafka: the producer id and epoch a request carries must be the
//! current ones (an older epoch is a zombie: PRODUCER_FENCED); a transaction that outlives its
//! timeout, or is still open when its id is initialised again, is aborted with the epoch
//! bumped, so the old producer's later writes fail at the partitions as well.

use std::collections::BTreeSet;

use chronik_log::ControlKind;

/// Kafka's `TransactionState`, with its codes in `__transaction_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnState {
    pub fn code(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    pub fn from_code(code: i8) -> Option<TxnState> {
        Some(match code {
            0 => TxnState::Empty,
            1 => TxnState::Ongoing,
            2 => TxnState::PrepareCommit,
            3 => TxnState::PrepareAbort,
            4 => TxnState::CompleteCommit,
            5 => TxnState::CompleteAbort,
            6 => TxnState::Dead,
            7 => TxnState::PrepareEpochFence,
            _ => return None,
        })
    }

    /// Kafka's name of the state, as DescribeTransactions and ListTransactions report it.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    /// Whether markers are still to be written.
    pub fn is_prepared(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

/// Why a request is refused. The handlers turn these into Kafka codes, which depend on the
/// request version (PRODUCER_FENCED is INVALID_PRODUCER_EPOCH for older clients).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnError {
    /// The request's epoch is not the current one: another producer took over the id.
    ProducerFenced,
    /// The transactional id is unknown, or mapped to another producer id.
    InvalidProducerIdMapping,
    /// The request does not fit the state (e.g. EndTxn without a transaction).
    InvalidTxnState,
    /// A commit or abort is still being completed; the client retries.
    ConcurrentTransactions,
}

/// What InitProducerId must do first for an existing transactional id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitStep {
    /// Nothing is in flight: bump the epoch and answer.
    Ready,
    /// A transaction is open: abort it with a bumped epoch (fencing its producer) first.
    AbortOpen,
    /// A prepared commit or abort must be completed first.
    CompletePrepared,
}

/// What EndTxn must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndStep {
    /// The state is now prepared: persist it, write the markers, complete.
    WriteMarkers,
    /// A retry of an EndTxn already completed the same way: answer success.
    AlreadyDone,
}

/// Everything the coordinator knows about one transactional id; one `__transaction_state`
/// record holds all of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump (memory only): a client whose InitProducerId answer was
    /// lost retries with it (KIP-360) and must not be fenced for that.
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// The partitions of the open (or prepared) transaction, ordered for stable output.
    pub partitions: BTreeSet<(String, i32)>,
    /// When the open transaction began (its first AddPartitions), -1 when none is open.
    pub start_timestamp: i64,
    pub last_update_timestamp: i64,
}

/// Epochs are i16 and must stay below `i16::MAX` (Kafka reserves it); at this point a new
/// producer id with epoch 0 takes over.
const MAX_EPOCH: i16 = i16::MAX - 1;

impl TxnMetadata {
    /// A transactional id seen for the first time, with its freshly allocated producer id.
    pub fn new(transactional_id: &str, producer_id: i64, timeout_ms: i32, now: i64) -> Self {
        TxnMetadata {
            transactional_id: transactional_id.to_string(),
            producer_id,
            producer_epoch: 0,
            last_producer_epoch: -1,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_timestamp: -1,
            last_update_timestamp: now,
        }
    }

    /// Whether the next bump needs a new producer id (the epoch is used up).
    pub fn epoch_exhausted(&self) -> bool {
        self.producer_epoch >= MAX_EPOCH
    }

    /// Check an InitProducerId for this id. `expected` is the producer id and epoch a v3+
    /// client sends when it re-initialises (KIP-360); it must be the current identity (or the
    /// one before the last bump, for a retry).
    pub fn check_init(&self, expected: Option<(i64, i16)>) -> Result<InitStep, TxnError> {
        if let Some((pid, epoch)) = expected {
            let known_epoch = epoch == self.producer_epoch
                || (epoch == self.last_producer_epoch && self.last_producer_epoch >= 0);
            if pid != self.producer_id || !known_epoch {
                return Err(TxnError::ProducerFenced);
            }
        }
        Ok(match self.state {
            TxnState::Ongoing => InitStep::AbortOpen,
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence => {
                InitStep::CompletePrepared
            }
            TxnState::Empty
            | TxnState::CompleteCommit
            | TxnState::CompleteAbort
            | TxnState::Dead => InitStep::Ready,
        })
    }

    /// Hand out the next epoch (or, when the epoch is used up, `new_producer_id` with epoch 0).
    /// Only valid when [`TxnMetadata::check_init`] said `Ready`.
    pub fn bump_for_init(&mut self, new_producer_id: Option<i64>, timeout_ms: i32, now: i64) {
        self.last_producer_epoch = self.producer_epoch;
        match new_producer_id.filter(|_| self.epoch_exhausted()) {
            Some(pid) => {
                self.producer_id = pid;
                self.producer_epoch = 0;
                self.last_producer_epoch = -1;
            }
            None => self.producer_epoch += 1,
        }
        self.timeout_ms = timeout_ms;
        self.state = TxnState::Empty;
        self.partitions.clear();
        self.start_timestamp = -1;
        self.last_update_timestamp = now;
    }

    fn check_producer(&self, producer_id: i64, epoch: i16) -> Result<(), TxnError> {
        if producer_id != self.producer_id {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        if epoch != self.producer_epoch {
            return Err(TxnError::ProducerFenced);
        }
        Ok(())
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn: the partitions join the transaction, which opens
    /// if it is not. Returns whether anything changed (nothing to persist otherwise).
    pub fn add_partitions(
        &mut self,
        producer_id: i64,
        epoch: i16,
        partitions: impl IntoIterator<Item = (String, i32)>,
        now: i64,
    ) -> Result<bool, TxnError> {
        self.check_producer(producer_id, epoch)?;
        match self.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence => {
                return Err(TxnError::ConcurrentTransactions)
            }
            TxnState::Dead => return Err(TxnError::InvalidTxnState),
            TxnState::Empty
            | TxnState::Ongoing
            | TxnState::CompleteCommit
            | TxnState::CompleteAbort => {}
        }
        let opening = self.state != TxnState::Ongoing;
        let mut changed = opening;
        for p in partitions {
            changed |= self.partitions.insert(p);
        }
        if changed {
            if opening {
                self.state = TxnState::Ongoing;
                self.start_timestamp = now;
            }
            self.last_update_timestamp = now;
        }
        Ok(changed)
    }

    /// EndTxn: prepare the commit or abort of the open transaction.
    pub fn prepare_end(
        &mut self,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        now: i64,
    ) -> Result<EndStep, TxnError> {
        self.check_producer(producer_id, epoch)?;
        match (self.state, commit) {
            (TxnState::Ongoing, _) => {
                self.state = if commit {
                    TxnState::PrepareCommit
                } else {
                    TxnState::PrepareAbort
                };
                self.last_update_timestamp = now;
                Ok(EndStep::WriteMarkers)
            }
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
                Ok(EndStep::AlreadyDone)
            }
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                Err(TxnError::ConcurrentTransactions)
            }
            _ => Err(TxnError::InvalidTxnState),
        }
    }

    /// Abort the open transaction and fence its producer: the epoch is bumped (unless used up)
    /// so the markers, and any later write of the old epoch, carry the new one.
    fn prepare_fencing_abort(&mut self, now: i64) {
        if !self.epoch_exhausted() {
            self.last_producer_epoch = self.producer_epoch;
            self.producer_epoch += 1;
        }
        self.state = TxnState::PrepareAbort;
        self.last_update_timestamp = now;
    }

    /// Whether the id may be forgotten (Kafka's transactional.id.expiration.ms): nothing open
    /// or being completed, and no change for `expiration_ms`.
    pub fn expired(&self, now: i64, expiration_ms: i64) -> bool {
        matches!(
            self.state,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        ) && now.saturating_sub(self.last_update_timestamp) >= expiration_ms
    }

    /// InitProducerId found a transaction open: abort it, fencing the old producer.
    pub fn prepare_abort_for_init(&mut self, now: i64) -> bool {
        if self.state != TxnState::Ongoing {
            return false;
        }
        self.prepare_fencing_abort(now);
        true
    }

    /// Whether the open transaction has outlived its timeout at `now`.
    pub fn has_expired(&self, now: i64) -> bool {
        self.state == TxnState::Ongoing
            && now.saturating_sub(self.start_timestamp) > i64::from(self.timeout_ms)
    }

    /// The coordinator's timer: abort an expired transaction, fencing its producer. Returns
    /// false (and changes nothing) when the transaction is not open or not expired.
    pub fn prepare_abort_on_timeout(&mut self, now: i64) -> bool {
        if !self.has_expired(now) {
            return false;
        }
        self.prepare_fencing_abort(now);
        true
    }

    /// The marker a prepared state writes.
    pub fn marker(&self) -> Option<ControlKind> {
        match self.state {
            TxnState::PrepareCommit => Some(ControlKind::Commit),
            TxnState::PrepareAbort => Some(ControlKind::Abort),
            _ => None,
        }
    }

    /// Every marker is written: the transaction is complete and holds no partitions.
    pub fn complete(&mut self, now: i64) {
        self.state = match self.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            other => other,
        };
        self.partitions.clear();
        self.start_timestamp = -1;
        self.last_update_timestamp = now;
    }
}
