//! The produce side: `--producers` librdkafka producers, each on its own thread, send numbered
//! payloads (optionally paced to `--rate`) and record every acknowledgement.
//!
//! Latency is measured from the moment a message is handed to librdkafka to its delivery
//! callback (the broker's acknowledgement), so at unlimited rate it includes client queueing,
//! as in rdkafka_performance.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

use crate::report::{new_histogram, Progress};
use crate::{payload, Cli};

/// One acknowledged message: where the broker says it stored it, and which message it was.
#[derive(Debug, Clone, Copy)]
pub struct Acked {
    pub partition: i32,
    /// Negative when the broker did not report an offset (acks=0).
    pub offset: i64,
    pub seq: u64,
    /// When the acknowledgement arrived, in nanoseconds since the run's clock origin.
    pub acked_nanos: u64,
}

/// Per-partition summary of acknowledgements, enough for the watermark check.
#[derive(Debug, Default, Clone, Copy)]
pub struct PartitionAcks {
    pub count: u64,
    /// Highest acknowledged offset, or -1 when none was reported.
    pub max_offset: i64,
}

/// Everything a produce run observed.
#[derive(Debug)]
pub struct ProduceOutcome {
    pub acked: u64,
    pub acked_bytes: u64,
    pub errors: u64,
    /// The first few delivery or send errors, for the report.
    pub error_samples: Vec<String>,
    pub elapsed: Duration,
    /// Send-to-ack latency in microseconds.
    pub latency: Histogram<u64>,
    /// When the slowest acknowledged message was sent, so a stall can be found in broker logs.
    pub slowest_sent_at: Option<SystemTime>,
    pub partitions: BTreeMap<i32, PartitionAcks>,
    /// Every acknowledged message, kept only when a read-back will check them.
    pub acked_records: Vec<Acked>,
}

/// State shared between a producer's sending thread, its delivery callbacks and the run.
struct Shared {
    /// Clock origin for send timestamps carried in payloads and delivery opaques.
    origin: Instant,
    progress: Arc<Progress>,
    keep_records: bool,
    format: payload::Format,
    collected: Mutex<Collected>,
}

/// What the delivery callbacks of all producers accumulate.
struct Collected {
    latency: Histogram<u64>,
    /// (latency µs, send time in nanoseconds since the origin) of the slowest acknowledgement.
    slowest: Option<(u64, u64)>,
    partitions: BTreeMap<i32, PartitionAcks>,
    records: Vec<Acked>,
    error_samples: Vec<String>,
}

/// Messages produced when neither --count nor --duration is given.
const DEFAULT_COUNT: u64 = 100_000;

const MAX_ERROR_SAMPLES: usize = 5;

impl Collected {
    fn note_error(&mut self, error: String) {
        if self.error_samples.len() < MAX_ERROR_SAMPLES {
            self.error_samples.push(error);
        }
    }
}

/// The librdkafka context whose delivery callback records each acknowledgement.
struct DeliveryRecorder {
    shared: Arc<Shared>,
}

impl ClientContext for DeliveryRecorder {}

impl ProducerContext for DeliveryRecorder {
    /// Send time in nanoseconds since `Shared::origin`.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_nanos: usize) {
        let now = payload::nanos_since(self.shared.origin);
        let latency_us = now.saturating_sub(sent_nanos as u64) / 1_000;
        let progress = &self.shared.progress;
        let mut collected = self.shared.collected.lock().expect("collector poisoned");
        match result {
            Ok(message) => {
                let bytes = message.payload().map_or(0, <[u8]>::len) as u64;
                progress.acked.fetch_add(1, Ordering::Relaxed);
                progress.bytes.fetch_add(bytes, Ordering::Relaxed);
                collected.latency.saturating_record(latency_us.max(1));
                if collected
                    .slowest
                    .is_none_or(|(worst, _)| latency_us > worst)
                {
                    collected.slowest = Some((latency_us, sent_nanos as u64));
                }
                let entry = collected.partitions.entry(message.partition()).or_default();
                entry.count += 1;
                entry.max_offset = entry.max_offset.max(message.offset());
                if self.shared.keep_records {
                    let format = self.shared.format;
                    let seq = message
                        .payload()
                        .and_then(|p| format.seq(p))
                        .unwrap_or(u64::MAX);
                    let record = Acked {
                        partition: message.partition(),
                        offset: message.offset(),
                        seq,
                        acked_nanos: now,
                    };
                    collected.records.push(record);
                }
            }
            Err((error, _)) => {
                progress.errors.fetch_add(1, Ordering::Relaxed);
                collected.note_error(format!("delivery failed: {error}"));
            }
        }
    }
}

/// Runs the produce phase, reporting into `progress` when a round-trip or freshness run shares
/// its own; `keep_records` keeps every acknowledgement even without `--verify-readback`.
pub fn run(
    cli: &Cli,
    progress: Option<Arc<Progress>>,
    keep_records: bool,
) -> Result<ProduceOutcome> {
    let progress = progress.unwrap_or_else(|| Progress::start("produce"));
    let shared = Arc::new(Shared {
        origin: progress.origin,
        progress: Arc::clone(&progress),
        keep_records: keep_records || cli.verify_readback,
        format: cli.payload,
        collected: Mutex::new(Collected {
            latency: new_histogram(),
            slowest: None,
            partitions: BTreeMap::new(),
            records: Vec::new(),
            error_samples: Vec::new(),
        }),
    });
    let mut config = cli.producer_config()?;
    let mut producers = Vec::new();
    for index in 0..cli.producers {
        let context = DeliveryRecorder {
            shared: Arc::clone(&shared),
        };
        if cli.transaction_records.is_some() {
            config.set(
                "transactional.id",
                format!("chronik-bench-{}-{index}", std::process::id()),
            );
        }
        let producer: ThreadedProducer<DeliveryRecorder> = config
            .create_with_context(context)
            .context("creating producer")?;
        if cli.transaction_records.is_some() {
            producer
                .init_transactions(TRANSACTION_TIMEOUT)
                .context("initialising transactions")?;
            producer
                .begin_transaction()
                .context("beginning the first transaction")?;
        }
        producers.push(producer);
    }

    let plan = Plan::new(cli);
    let start = Instant::now();
    let failed = AtomicBool::new(false);
    thread::scope(|scope| {
        for (index, producer) in producers.iter().enumerate() {
            let plan = &plan;
            let shared = &shared;
            let failed = &failed;
            scope.spawn(move || {
                send_all(producer, plan, index as u64, shared, failed);
            });
        }
    });
    for producer in &producers {
        // Committing the open transaction (the remainder) flushes as well.
        let finished = match cli.transaction_records {
            Some(_) if !failed.load(Ordering::Relaxed) => drain(producer, TRANSACTION_TIMEOUT)
                .and_then(|()| {
                    producer
                        .commit_transaction(TRANSACTION_TIMEOUT)
                        .map_err(|e| format!("committing the last transaction: {e}"))
                }),
            _ => producer
                .flush(Duration::from_secs(120))
                .map_err(|e| format!("flush: {e}")),
        };
        if let Err(error) = finished {
            shared
                .collected
                .lock()
                .expect("collector poisoned")
                .note_error(error);
            progress.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    let elapsed = start.elapsed();
    drop(producers);
    progress.finish();

    let shared = Arc::into_inner(shared).context("producer context still referenced")?;
    let collected = shared.collected.into_inner().expect("collector poisoned");
    let mut records = collected.records;
    records.sort_unstable_by_key(|r| (r.partition, r.offset));
    Ok(ProduceOutcome {
        acked: progress.acked.load(Ordering::Relaxed),
        acked_bytes: progress.bytes.load(Ordering::Relaxed),
        errors: progress.errors.load(Ordering::Relaxed),
        error_samples: collected.error_samples,
        elapsed,
        latency: collected.latency,
        slowest_sent_at: collected.slowest.map(|(_, sent_nanos)| {
            let origin_wall = SystemTime::now() - shared.origin.elapsed();
            origin_wall + Duration::from_nanos(sent_nanos)
        }),
        partitions: collected.partitions,
        acked_records: records,
    })
}

/// What every producer thread needs to know about the run.
struct Plan {
    topic: String,
    message_size: usize,
    producers: u64,
    /// Total messages over all producers; unbounded when running for a duration.
    count: Option<u64>,
    deadline: Option<Instant>,
    /// Messages per second for one producer; 0 is unlimited.
    rate_per_producer: f64,
    keys: bool,
    /// Records per transaction, when producing transactionally.
    transaction_records: Option<u64>,
}

impl Plan {
    fn new(cli: &Cli) -> Plan {
        let producers = u64::from(cli.producers);
        Plan {
            topic: cli.topic.clone(),
            message_size: cli.message_size,
            producers,
            count: cli
                .duration
                .is_none()
                .then_some(cli.count.unwrap_or(DEFAULT_COUNT)),
            deadline: cli
                .duration
                .map(|secs| Instant::now() + Duration::from_secs_f64(secs)),
            rate_per_producer: cli.rate as f64 / producers as f64,
            keys: cli.keys,
            transaction_records: cli.transaction_records,
        }
    }
}

/// One producer's sending loop. Producer `index` of `n` sends sequence numbers
/// `index, index + n, index + 2n, ...` so the numbers are unique across producers.
fn send_all(
    producer: &ThreadedProducer<DeliveryRecorder>,
    plan: &Plan,
    index: u64,
    shared: &Shared,
    failed: &AtomicBool,
) {
    let mut buf = vec![0u8; plan.message_size];
    let started = Instant::now();
    let mut local: u64 = 0;
    loop {
        let seq = index + local * plan.producers;
        if plan.count.is_some_and(|count| seq >= count)
            || plan.deadline.is_some_and(|d| Instant::now() >= d)
            || failed.load(Ordering::Relaxed)
        {
            return;
        }
        if plan.rate_per_producer > 0.0 {
            pace(started, local, plan.rate_per_producer);
        }
        let sent_nanos = payload::nanos_since(shared.origin);
        shared.format.fill(&mut buf, seq, sent_nanos);
        let key = seq.to_be_bytes();
        let mut record = BaseRecord::<[u8], [u8], usize>::with_opaque_to(
            &plan.topic,
            usize::try_from(sent_nanos).unwrap_or(usize::MAX),
        )
        .payload(&buf[..]);
        if plan.keys {
            record = record.key(&key[..]);
        }
        loop {
            match producer.send(record) {
                Ok(()) => {
                    shared.progress.sent.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    thread::sleep(Duration::from_micros(200));
                }
                Err((error, _)) => {
                    shared.progress.errors.fetch_add(1, Ordering::Relaxed);
                    let mut collected = shared.collected.lock().expect("collector poisoned");
                    collected.note_error(format!("send failed: {error}"));
                    failed.store(true, Ordering::Relaxed);
                    return;
                }
            }
        }
        local += 1;
        if plan.transaction_records.is_some_and(|n| local % n == 0) {
            let next = drain(producer, TRANSACTION_TIMEOUT).and_then(|()| {
                producer
                    .commit_transaction(TRANSACTION_TIMEOUT)
                    .and_then(|()| producer.begin_transaction())
                    .map_err(|e| e.to_string())
            });
            if let Err(error) = next {
                shared.progress.errors.fetch_add(1, Ordering::Relaxed);
                let mut collected = shared.collected.lock().expect("collector poisoned");
                collected.note_error(format!("transaction: {error}"));
                failed.store(true, Ordering::Relaxed);
                return;
            }
        }
    }
}

/// Wait until every record sent is acknowledged and its delivery report served by the
/// producer's own polling thread. rust-rdkafka's `flush` (which `commit_transaction` calls
/// first) polls the same queue with a 100 ms timeout; when that thread takes the reports, the
/// flush sleeps the whole 100 ms, which capped transactions at ten per second.
fn drain(producer: &ThreadedProducer<DeliveryRecorder>, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while producer.in_flight_count() > 0 {
        if Instant::now() > deadline {
            return Err(format!(
                "{} records still unacknowledged after {timeout:?}",
                producer.in_flight_count()
            ));
        }
        thread::sleep(Duration::from_micros(100));
    }
    Ok(())
}

/// How long a transaction call (init, commit) may take before the run fails.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// Sleeps until message number `sent` of this producer is due at `rate` messages per second.
fn pace(started: Instant, sent: u64, rate: f64) {
    let due = started + Duration::from_secs_f64(sent as f64 / rate);
    let now = Instant::now();
    if due > now {
        thread::sleep(due - now);
    }
}
