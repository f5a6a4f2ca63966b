//! `--mode failover`: how long a partition is unwritable when its leader is SIGKILLed.
//!
//! One producer sends a probe record to `--failover-partition` every `--probe-interval-ms`
//! throughout. Each round finds the partition's leader in the metadata, runs `--kill-command`
//! with `{broker}` replaced by its id (the clock starts before the command is spawned), and
//! waits for the first acknowledgement of a probe sent after the kill: with acks=all that is a
//! new leader accepting writes with enough in-sync replicas, as a client sees it (including the
//! client's own metadata refresh). Then `--restart-command` brings the broker back and the next
//! round waits until every replica of every partition is in sync again.
//!
//! Every acknowledged probe is verified afterwards like any produce run.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use rdkafka::client::ClientContext;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use serde::Serialize;

use crate::produce::{Acked, PartitionAcks, ProduceOutcome};
use crate::report::{new_histogram, LatencySummary, Progress, Report};
use crate::{payload, topic, verify, Cli};

/// One kill.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverRound {
    /// The broker that led the partition and was killed.
    pub broker: i32,
    /// From the kill to the first acknowledged probe sent after it.
    pub failover_ms: f64,
    /// From the restart to every replica in sync again.
    pub rejoin_ms: f64,
}

/// The failover part of a report.
#[derive(Debug, Serialize)]
pub struct FailoverSummary {
    pub partition: i32,
    pub probe_interval_ms: u64,
    pub rounds: Vec<FailoverRound>,
    pub latency: Option<LatencySummary>,
}

impl FailoverSummary {
    pub fn line(&self) -> String {
        let latency = self
            .latency
            .as_ref()
            .map_or_else(|| "no samples".to_string(), LatencySummary::line);
        format!(
            "{latency} (SIGKILL of partition {}'s leader to the first write accepted, {} kills, \
             probe every {} ms)",
            self.partition,
            self.rounds.len(),
            self.probe_interval_ms
        )
    }
}

/// What the delivery callback sees: it only queues, the run thread interprets.
struct Deliveries {
    format: payload::Format,
    origin: Instant,
    queue: std::sync::Mutex<Vec<Delivery>>,
}

enum Delivery {
    Acked {
        record: Acked,
        sent_nanos: u64,
        bytes: u64,
    },
    Failed(String),
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_nanos: usize) {
        let now = payload::nanos_since(self.origin);
        let delivery = match result {
            Ok(message) => Delivery::Acked {
                record: Acked {
                    partition: message.partition(),
                    offset: message.offset(),
                    seq: message
                        .payload()
                        .and_then(|p| self.format.seq(p))
                        .unwrap_or(u64::MAX),
                    acked_nanos: now,
                },
                sent_nanos: sent_nanos as u64,
                bytes: message.payload().map_or(0, <[u8]>::len) as u64,
            },
            Err((error, _)) => Delivery::Failed(format!("delivery failed: {error}")),
        };
        self.queue.lock().expect("queue poisoned").push(delivery);
    }
}

/// The probe producer and what it has seen so far.
struct Prober<'a> {
    cli: &'a Cli,
    producer: BaseProducer<Deliveries>,
    progress: &'a Progress,
    interval: Duration,
    next_seq: u64,
    next_due: Instant,
    buf: Vec<u8>,
    acked: Vec<Acked>,
    bytes: u64,
    latency: Histogram<u64>,
    errors: u64,
    error_samples: Vec<String>,
    /// Sent after the current round's kill and acknowledged: the earliest ack time.
    first_ack_after: Option<(u64, u64)>,
}

impl Prober<'_> {
    /// Sends a probe when one is due and serves delivery callbacks for up to `wait`.
    fn step(&mut self, wait: Duration) {
        let now = Instant::now();
        if now >= self.next_due {
            let sent = payload::nanos_since(self.progress.origin);
            self.cli.payload.fill(&mut self.buf, self.next_seq, sent);
            let record = BaseRecord::<[u8], [u8], usize>::with_opaque_to(
                &self.cli.topic,
                usize::try_from(sent).unwrap_or(usize::MAX),
            )
            .partition(self.cli.failover_partition)
            .payload(&self.buf[..]);
            match self.producer.send(record).map_err(|(error, _)| error) {
                Ok(()) => {
                    self.next_seq += 1;
                    self.progress.sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => self.note_error(format!("send failed: {error}")),
            }
            self.next_due = now + self.interval;
        }
        let until_due = self.next_due.saturating_duration_since(Instant::now());
        self.producer.poll(wait.min(until_due));
        let deliveries =
            std::mem::take(&mut *self.producer.context().queue.lock().expect("poisoned"));
        for delivery in deliveries {
            match delivery {
                Delivery::Acked {
                    record,
                    sent_nanos,
                    bytes,
                } => {
                    self.progress.acked.fetch_add(1, Ordering::Relaxed);
                    self.progress.bytes.fetch_add(bytes, Ordering::Relaxed);
                    self.bytes += bytes;
                    let us = record.acked_nanos.saturating_sub(sent_nanos) / 1_000;
                    self.latency.saturating_record(us.max(1));
                    if let Some((kill, first)) = self.first_ack_after.as_mut() {
                        if sent_nanos >= *kill && (*first == 0 || record.acked_nanos < *first) {
                            *first = record.acked_nanos;
                        }
                    }
                    self.acked.push(record);
                }
                Delivery::Failed(error) => self.note_error(error),
            }
        }
    }

    fn note_error(&mut self, error: String) {
        self.errors += 1;
        self.progress.errors.fetch_add(1, Ordering::Relaxed);
        if self.error_samples.len() < 5 {
            self.error_samples.push(error);
        }
    }

    /// Keeps probing until `done` holds (asked at most every `check_every`) or `timeout`
    /// passes; false on timeout.
    fn probe_until(
        &mut self,
        timeout: Duration,
        check_every: Duration,
        mut done: impl FnMut(&mut Self) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        let mut next_check = Instant::now();
        while Instant::now() < deadline {
            if Instant::now() >= next_check {
                if done(self) {
                    return true;
                }
                next_check = Instant::now() + check_every;
            }
            self.step(Duration::from_millis(1));
        }
        done(self)
    }
}

/// How often a round asks the metadata whether the cluster is healthy again.
const HEALTH_CHECK_EVERY: Duration = Duration::from_millis(250);

fn run_command(template: &str, broker: i32) -> Result<()> {
    let command = template.replace("{broker}", &broker.to_string());
    let status = Command::new("sh")
        .arg("-c")
        .arg(&command)
        .status()
        .with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        bail!("{command:?} exited with {status}");
    }
    Ok(())
}

/// Whether every partition has a leader and its full ISR (errors count as not yet).
fn all_in_sync(cli: &Cli) -> bool {
    topic::placement(cli)
        .is_ok_and(|view| !view.is_empty() && view.values().all(topic::Placement::healthy))
}

/// Runs `--mode failover`.
pub fn run(cli: &Cli) -> Result<Report> {
    let (Some(kill), Some(restart)) = (&cli.kill_command, &cli.restart_command) else {
        bail!("--mode failover needs --kill-command and --restart-command");
    };
    let rejoin = Duration::from_secs_f64(cli.rejoin_timeout);
    topic::ensure(cli).context("preparing topic")?;
    let deadline = Instant::now() + rejoin;
    while !all_in_sync(cli) {
        if Instant::now() > deadline {
            bail!("topic {} never had all replicas in sync", cli.topic);
        }
        thread::sleep(Duration::from_millis(100));
    }
    let before = topic::watermarks(cli).context("reading watermarks before the run")?;

    let progress = Progress::start("failover");
    let mut config = cli.producer_config()?;
    // Find the new leader quickly (the defaults back off up to a second between retries) and
    // keep probes queued through a whole round; `-X` still wins.
    let timeout_ms = ((cli.rejoin_timeout * 1000.0) as u64).to_string();
    for (key, value) in [
        ("retry.backoff.ms", "10"),
        ("retry.backoff.max.ms", "50"),
        ("reconnect.backoff.ms", "10"),
        ("reconnect.backoff.max.ms", "50"),
        ("topic.metadata.refresh.fast.interval.ms", "20"),
        ("message.timeout.ms", timeout_ms.as_str()),
    ] {
        if cli.property(key).is_none() {
            config.set(key, value);
        }
    }
    let producer: BaseProducer<Deliveries> = config
        .create_with_context(Deliveries {
            format: cli.payload,
            origin: progress.origin,
            queue: std::sync::Mutex::new(Vec::new()),
        })
        .context("creating producer")?;
    let mut prober = Prober {
        cli,
        producer,
        progress: &progress,
        interval: Duration::from_millis(cli.probe_interval_ms.max(1)),
        next_seq: 0,
        next_due: Instant::now(),
        buf: vec![0u8; cli.message_size],
        acked: Vec::new(),
        bytes: 0,
        latency: new_histogram(),
        errors: 0,
        error_samples: Vec::new(),
        first_ack_after: None,
    };

    let started = Instant::now();
    let mut rounds = Vec::new();
    let mut histogram = new_histogram();
    let partition = cli.failover_partition;
    let mut failure = None;
    for round in 0..cli.failover_rounds {
        // Healthy again (the previous round's broker is back in every ISR) before the kill.
        let healthy = prober.probe_until(rejoin, HEALTH_CHECK_EVERY, |_| all_in_sync(cli));
        let leader = topic::placement(cli)
            .ok()
            .and_then(|view| view.get(&partition).map(|p| p.leader));
        let Some(leader) = leader.filter(|&l| healthy && l >= 0) else {
            failure = Some(format!("round {round}: partition {partition} not healthy"));
            break;
        };
        let kill_nanos = payload::nanos_since(progress.origin);
        prober.first_ack_after = Some((kill_nanos, 0));
        if let Err(error) = run_command(kill, leader) {
            failure = Some(format!("round {round}: {error:#}"));
            break;
        }
        let recovered = prober.probe_until(rejoin, Duration::ZERO, |p| {
            p.first_ack_after.is_some_and(|(_, first)| first != 0)
        });
        let first = prober.first_ack_after.take().map_or(0, |(_, first)| first);
        let restart_at = Instant::now();
        if let Err(error) = run_command(restart, leader) {
            failure = Some(format!("round {round}: {error:#}"));
            break;
        }
        if !recovered {
            failure = Some(format!(
                "round {round}: no probe acknowledged within {rejoin:?} of killing broker {leader}"
            ));
            break;
        }
        let failover_us = (first - kill_nanos) / 1_000;
        histogram.saturating_record(failover_us.max(1));
        let rejoined = prober.probe_until(rejoin, HEALTH_CHECK_EVERY, |_| all_in_sync(cli));
        let record = FailoverRound {
            broker: leader,
            failover_ms: failover_us as f64 / 1000.0,
            rejoin_ms: restart_at.elapsed().as_secs_f64() * 1000.0,
        };
        eprintln!(
            "failover round {}: broker {} killed, new leader accepted writes after {:.1} ms, \
             back in sync after {:.0} ms",
            round + 1,
            record.broker,
            record.failover_ms,
            record.rejoin_ms
        );
        rounds.push(record);
        if !rejoined {
            failure = Some(format!(
                "round {round}: broker {leader} not back in every ISR within {rejoin:?}"
            ));
            break;
        }
    }
    if let Err(error) = prober.producer.flush(rejoin) {
        prober.note_error(format!("flush: {error}"));
    }
    prober.step(Duration::ZERO);
    let elapsed = started.elapsed();
    progress.finish();

    let mut partitions: BTreeMap<i32, PartitionAcks> = BTreeMap::new();
    for record in &prober.acked {
        let entry = partitions.entry(record.partition).or_default();
        entry.count += 1;
        entry.max_offset = entry.max_offset.max(record.offset);
    }
    let mut records = std::mem::take(&mut prober.acked);
    records.sort_unstable_by_key(|r| (r.partition, r.offset));
    let outcome = ProduceOutcome {
        acked: records.len() as u64,
        acked_bytes: prober.bytes,
        errors: prober.errors,
        error_samples: prober.error_samples.clone(),
        elapsed,
        latency: prober.latency.clone(),
        slowest_sent_at: None,
        partitions,
        acked_records: records,
    };
    let mut report = Report::from_produce(cli, &outcome);
    if let Some(failure) = failure {
        report.errors += 1;
        report.error_samples.push(failure);
    }
    report.failover = Some(FailoverSummary {
        partition,
        probe_interval_ms: cli.probe_interval_ms,
        rounds,
        latency: LatencySummary::from_histogram(&histogram),
    });
    if !cli.no_verify {
        report.verification = Some(verify::run(cli, &before, &outcome)?);
    }
    Ok(report)
}
