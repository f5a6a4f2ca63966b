//! The consume side: read partitions between given offsets with an explicitly assigned
//! consumer (no group membership), for consume runs, round-trip runs and the read-back check.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::report::{new_histogram, LatencySummary, Progress, Report};
use crate::{payload, produce, topic, verify, Cli};

/// Offsets by partition id.
pub type Offsets = BTreeMap<i32, i64>;

/// Where a read starts and when it stops.
pub struct ReadRange<'a> {
    /// First offset to read in each partition.
    pub start: &'a Offsets,
    /// Offset to stop at (exclusive) in each partition; may be set while the read is running.
    pub end: &'a OnceLock<Offsets>,
    /// Stop after this many messages even if `end` is not reached.
    pub max_messages: Option<u64>,
}

/// Reads the topic over `range`, calling `on_message(partition, offset, payload)` for every
/// message, and signals `ready` once the consumer has been assigned and polled once.
/// Fails when no message arrives for `--stall-timeout` while the end is still ahead.
pub fn read(
    cli: &Cli,
    range: &ReadRange<'_>,
    ready: Option<mpsc::Sender<()>>,
    mut on_message: impl FnMut(i32, i64, &[u8]),
) -> Result<u64> {
    let consumer: BaseConsumer = cli
        .consumer_config()?
        .create()
        .context("creating consumer")?;
    let mut assignment = TopicPartitionList::new();
    for (&partition, &offset) in range.start {
        assignment
            .add_partition_offset(&cli.topic, partition, Offset::Offset(offset))
            .context("building assignment")?;
    }
    consumer
        .assign(&assignment)
        .context("assigning partitions")?;

    let mut next: Offsets = range.start.clone();
    let mut count: u64 = 0;
    let mut last_progress = Instant::now();
    let mut ready = ready;
    loop {
        if let Some(end) = range.end.get() {
            let caught_up = end
                .iter()
                .all(|(p, &end)| next.get(p).is_some_and(|&n| n >= end));
            if caught_up {
                return Ok(count);
            }
            if last_progress.elapsed() > cli.stall_timeout() {
                bail!(
                    "consumer stalled for {:?}: read up to {next:?}, expected to reach {end:?}",
                    cli.stall_timeout()
                );
            }
        }
        if range.max_messages.is_some_and(|max| count >= max) {
            return Ok(count);
        }
        let polled = consumer.poll(Duration::from_millis(100));
        if let Some(ready) = ready.take() {
            let _ = ready.send(());
        }
        match polled {
            // Transaction markers are never delivered but take offsets, the last one at the
            // very end: the consumer's position (past them) says how far it really is.
            None => advance_to_position(&consumer, &cli.topic, &mut next),
            Some(Ok(message)) => {
                let partition = message.partition();
                let offset = message.offset();
                on_message(partition, offset, message.payload().unwrap_or(&[]));
                next.insert(partition, offset + 1);
                count += 1;
                last_progress = Instant::now();
            }
            Some(Err(error)) => bail!("consume: {error}"),
        }
    }
}

/// Move `next` forward to where the consumer's position says it is.
fn advance_to_position(consumer: &BaseConsumer, topic: &str, next: &mut Offsets) {
    let Ok(position) = consumer.position() else {
        return;
    };
    for e in position.elements() {
        if let (true, Offset::Offset(at)) = (e.topic() == topic, e.offset()) {
            let n = next.entry(e.partition()).or_insert(at);
            *n = (*n).max(at);
        }
    }
}

/// `--mode consume`: read every partition from its low watermark to the high watermark it had
/// when the run started (or `--count` messages), and report the throughput.
pub fn run(cli: &Cli) -> Result<Report> {
    let marks = topic::watermarks(cli).context("reading watermarks")?;
    let start: Offsets = marks.iter().map(|(&p, &(low, _))| (p, low)).collect();
    let end = OnceLock::new();
    let _ = end.set(marks.iter().map(|(&p, &(_, high))| (p, high)).collect());
    let range = ReadRange {
        start: &start,
        end: &end,
        max_messages: cli.count,
    };
    let progress = Progress::start("consume");
    let started = Instant::now();
    let result = read(cli, &range, None, |_, _, payload| {
        progress.consumed.fetch_add(1, Ordering::Relaxed);
        progress
            .consumed_bytes
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
    });
    let elapsed = started.elapsed();
    progress.finish();
    result?;
    Ok(Report::new(
        cli,
        progress.consumed.load(Ordering::Relaxed),
        progress.consumed_bytes.load(Ordering::Relaxed),
        elapsed,
    ))
}

/// `--mode round-trip`: a consumer follows the topic's end while the producers run; the report
/// carries both send-to-ack and send-to-consume latency, and the run fails unless every
/// acknowledged message was consumed.
pub fn round_trip(cli: &Cli) -> Result<Report> {
    topic::ensure(cli).context("preparing topic")?;
    let before = topic::watermarks(cli).context("reading watermarks before the run")?;
    let start: Offsets = before.iter().map(|(&p, &(_, high))| (p, high)).collect();
    let end = OnceLock::new();
    let range = ReadRange {
        start: &start,
        end: &end,
        max_messages: None,
    };
    let progress = Progress::start("round-trip");
    let e2e = Mutex::new(new_histogram());
    let (ready_tx, ready_rx) = mpsc::channel();

    let (produced, consumed) = thread::scope(|scope| {
        let consumer = scope.spawn(|| {
            read(cli, &range, Some(ready_tx), |_, _, payload| {
                progress.consumed.fetch_add(1, Ordering::Relaxed);
                progress
                    .consumed_bytes
                    .fetch_add(payload.len() as u64, Ordering::Relaxed);
                if let Some(sent) = cli.payload.sent_nanos(payload) {
                    let now = payload::nanos_since(progress.origin);
                    if sent <= now {
                        let mut histogram = e2e.lock().expect("histogram poisoned");
                        histogram.saturating_record(((now - sent) / 1_000).max(1));
                    }
                }
            })
        });
        // Producing before the consumer is connected would count its start-up as latency.
        let _ = ready_rx.recv_timeout(Duration::from_secs(10));
        let produced = produce::run(cli, Some(Arc::clone(&progress)), false);
        // The end is where the high watermarks settle once they cover the acknowledgements
        // (replication may trail acks=1), so the consumer reads everything the check judges.
        let observed = produced.and_then(|produced| {
            let observed = if cli.no_verify {
                None
            } else {
                Some(verify::observe(cli, &before, &produced)?)
            };
            let marks = match &observed {
                Some(observed) => observed.after.clone(),
                None => topic::watermarks(cli).context("reading watermarks after the run")?,
            };
            Ok((produced, observed, marks))
        });
        // Whatever happened, tell the consumer where the topic ends so it can stop.
        let _ = end.set(match &observed {
            Ok((_, _, marks)) => marks.iter().map(|(&p, &(_, high))| (p, high)).collect(),
            Err(_) => start.clone(),
        });
        let consumed = consumer.join().expect("consumer thread panicked");
        (observed, consumed)
    });
    let (produced, observed, _) = produced?;
    let consumed = consumed?;

    let mut report = Report::from_produce(cli, &produced);
    report.end_to_end_latency =
        LatencySummary::from_histogram(&e2e.into_inner().expect("histogram poisoned"));
    if let Some(observed) = observed {
        let mut verification = verify::check(cli, &before, &produced, observed)?;
        if consumed < produced.acked {
            verification.fail(format!(
                "consumer saw {consumed} messages but {} were acknowledged",
                produced.acked
            ));
        }
        report.verification = Some(verification);
    }
    Ok(report)
}
