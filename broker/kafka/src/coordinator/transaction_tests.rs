//! The transaction state machine's rules, without I/O.

use chronik_log::ControlKind;

use super::transaction::{EndStep, InitStep, TxnError, TxnMetadata, TxnState};

fn parts(names: &[(&str, i32)]) -> Vec<(String, i32)> {
    names.iter().map(|(t, p)| (t.to_string(), *p)).collect()
}

fn fresh() -> TxnMetadata {
    TxnMetadata::new("tx", 1000, 60_000, 1)
}

#[test]
fn commit_runs_empty_ongoing_prepare_complete() {
    let mut m = fresh();
    assert_eq!(
        (m.producer_id, m.producer_epoch, m.state),
        (1000, 0, TxnState::Empty)
    );
    assert!(m.add_partitions(1000, 0, parts(&[("a", 0)]), 10).unwrap());
    assert_eq!((m.state, m.start_timestamp), (TxnState::Ongoing, 10));
    // More partitions join; a repeat changes nothing (nothing to persist).
    assert!(m.add_partitions(1000, 0, parts(&[("b", 1)]), 11).unwrap());
    assert!(!m.add_partitions(1000, 0, parts(&[("a", 0)]), 12).unwrap());
    assert_eq!(
        m.start_timestamp, 10,
        "the transaction started with its first partition"
    );
    assert_eq!(m.prepare_end(1000, 0, true, 20), Ok(EndStep::WriteMarkers));
    assert_eq!(m.state, TxnState::PrepareCommit);
    assert_eq!(m.marker(), Some(ControlKind::Commit));
    assert_eq!(m.partitions.len(), 2, "markers go to every partition");
    m.complete(21);
    assert_eq!(m.state, TxnState::CompleteCommit);
    assert!(m.partitions.is_empty());
    // A retried EndTxn(commit) succeeds; an abort now does not fit.
    assert_eq!(m.prepare_end(1000, 0, true, 22), Ok(EndStep::AlreadyDone));
    assert_eq!(
        m.prepare_end(1000, 0, false, 22),
        Err(TxnError::InvalidTxnState)
    );
    // The next transaction of the same producer.
    assert!(m.add_partitions(1000, 0, parts(&[("a", 0)]), 30).unwrap());
    assert_eq!(m.prepare_end(1000, 0, false, 31), Ok(EndStep::WriteMarkers));
    assert_eq!(m.marker(), Some(ControlKind::Abort));
    m.complete(32);
    assert_eq!(m.state, TxnState::CompleteAbort);
    assert_eq!(
        m.prepare_end(1000, 0, true, 33),
        Err(TxnError::InvalidTxnState)
    );
}

#[test]
fn end_without_a_transaction_is_an_invalid_state() {
    let mut m = fresh();
    assert_eq!(
        m.prepare_end(1000, 0, true, 5),
        Err(TxnError::InvalidTxnState)
    );
    assert_eq!(
        m.prepare_end(1000, 0, false, 5),
        Err(TxnError::InvalidTxnState)
    );
}

#[test]
fn requests_of_an_old_epoch_or_another_producer_are_refused() {
    let mut m = fresh();
    assert_eq!(m.check_init(None), Ok(InitStep::Ready));
    m.bump_for_init(None, 60_000, 2);
    assert_eq!(m.producer_epoch, 1);
    assert_eq!(
        m.add_partitions(1000, 0, parts(&[("a", 0)]), 3),
        Err(TxnError::ProducerFenced)
    );
    assert_eq!(
        m.add_partitions(999, 1, parts(&[("a", 0)]), 3),
        Err(TxnError::InvalidProducerIdMapping)
    );
    assert_eq!(
        m.prepare_end(1000, 0, true, 3),
        Err(TxnError::ProducerFenced)
    );
    // KIP-360: re-initialising with the current or the just-replaced epoch is allowed, any
    // other identity is a zombie.
    assert_eq!(m.check_init(Some((1000, 1))), Ok(InitStep::Ready));
    assert_eq!(m.check_init(Some((1000, 0))), Ok(InitStep::Ready));
    m.bump_for_init(None, 60_000, 4);
    assert_eq!(m.check_init(Some((1000, 0))), Err(TxnError::ProducerFenced));
    assert_eq!(m.check_init(Some((7, 2))), Err(TxnError::ProducerFenced));
}

#[test]
fn init_over_an_open_transaction_aborts_it_with_a_bumped_epoch() {
    let mut m = fresh();
    m.add_partitions(1000, 0, parts(&[("a", 0), ("b", 0)]), 5)
        .unwrap();
    assert_eq!(m.check_init(None), Ok(InitStep::AbortOpen));
    assert!(m.prepare_abort_for_init(6));
    assert_eq!((m.state, m.producer_epoch), (TxnState::PrepareAbort, 1));
    assert_eq!(m.marker(), Some(ControlKind::Abort));
    assert_eq!(m.check_init(None), Ok(InitStep::CompletePrepared));
    // While prepared, the old producer cannot add partitions or end it.
    assert_eq!(
        m.add_partitions(1000, 1, parts(&[("c", 0)]), 7),
        Err(TxnError::ConcurrentTransactions)
    );
    m.complete(8);
    assert_eq!(m.check_init(None), Ok(InitStep::Ready));
    m.bump_for_init(None, 60_000, 9);
    assert_eq!((m.state, m.producer_epoch), (TxnState::Empty, 2));
    // The fenced producer (epoch 0) gets nowhere.
    assert_eq!(
        m.prepare_end(1000, 0, true, 10),
        Err(TxnError::ProducerFenced)
    );
}

#[test]
fn an_expired_transaction_is_aborted_and_its_producer_fenced() {
    let mut m = TxnMetadata::new("tx", 5, 1_000, 0);
    m.add_partitions(5, 0, parts(&[("a", 0)]), 100).unwrap();
    assert!(!m.has_expired(1_100), "exactly the timeout is not past it");
    assert!(!m.prepare_abort_on_timeout(1_100));
    assert_eq!(m.state, TxnState::Ongoing);
    assert!(m.prepare_abort_on_timeout(1_101));
    assert_eq!((m.state, m.producer_epoch), (TxnState::PrepareAbort, 1));
    m.complete(1_102);
    assert_eq!(m.state, TxnState::CompleteAbort);
    // The producer's commit after the timeout is fenced.
    assert_eq!(
        m.prepare_end(5, 0, true, 1_200),
        Err(TxnError::ProducerFenced)
    );
    // Nothing open, nothing to time out.
    assert!(!m.prepare_abort_on_timeout(i64::MAX));
}

#[test]
fn a_used_up_epoch_moves_to_a_new_producer_id() {
    let mut m = fresh();
    m.producer_epoch = i16::MAX - 1;
    assert!(m.epoch_exhausted());
    m.bump_for_init(Some(2000), 60_000, 1);
    assert_eq!((m.producer_id, m.producer_epoch), (2000, 0));
    // A fencing abort at the limit keeps the epoch rather than overflow it.
    let mut m = fresh();
    m.producer_epoch = i16::MAX - 1;
    m.add_partitions(1000, i16::MAX - 1, parts(&[("a", 0)]), 1)
        .unwrap();
    assert!(m.prepare_abort_for_init(2));
    assert_eq!(m.producer_epoch, i16::MAX - 1);
}

#[test]
fn state_codes_round_trip() {
    for code in 0..8 {
        assert_eq!(TxnState::from_code(code).map(TxnState::code), Some(code));
    }
    assert_eq!(TxnState::from_code(8), None);
}

#[test]
fn only_idle_ids_without_a_transaction_in_flight_expire() {
    // Created at 1: Empty, idle from then.
    let mut m = fresh();
    assert!(!m.expired(1_000, 5_000));
    assert!(m.expired(5_001, 5_000));
    // An open transaction never expires (its timeout aborts it first), however old.
    assert!(m.add_partitions(1000, 0, parts(&[("a", 0)]), 10).unwrap());
    assert!(!m.expired(1_000_000, 5_000));
    assert_eq!(m.prepare_end(1000, 0, false, 20), Ok(EndStep::WriteMarkers));
    assert!(
        !m.expired(1_000_000, 5_000),
        "a prepared abort is still in flight"
    );
    m.complete(30);
    assert!(!m.expired(5_029, 5_000));
    assert!(m.expired(5_030, 5_000), "idle since it completed");
}
