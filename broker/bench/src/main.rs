//! chronik-bench: a Kafka load generator built on librdkafka (the `rdkafka` crate).
//!
//! It produces, consumes or round-trips messages against any Kafka-compatible broker, prints a
//! progress line every second on stderr and a final report on stdout (`--json` for machines),
//! and after a produce run verifies that what the broker acknowledged is really stored.
//! The process exits non-zero when a verification fails or delivery errors occurred.

mod consume;
mod failover;
mod freshness;
mod http;
mod payload;
mod produce;
mod rebalance;
mod report;
mod topic;
mod verify;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use rdkafka::ClientConfig;

use crate::report::Report;

/// Command-line interface; every flag maps onto one librdkafka setting or one run parameter.
#[derive(Debug, Parser)]
#[command(
    name = "chronik-bench",
    version,
    about = "Kafka load generator and benchmark report"
)]
pub struct Cli {
    /// Broker address list given to librdkafka as bootstrap.servers.
    #[arg(
        long,
        default_value = "127.0.0.1:9092",
        env = "CHRONIK_BENCH_BOOTSTRAP"
    )]
    pub bootstrap: String,

    /// Topic to produce to or consume from.
    #[arg(long, default_value = "chronik-bench")]
    pub topic: String,

    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::Produce)]
    pub mode: Mode,

    /// Payload size in bytes (at least 16 for binary payloads: a sequence number and a send
    /// timestamp lead it; at least 128 for JSON).
    #[arg(long, default_value_t = 1024)]
    pub message_size: usize,

    /// Payload format: binary, or JSON objects (seq, sent_ns, city, amount, text) that indexing
    /// topics can search and query.
    #[arg(long, value_enum, default_value_t = payload::Format::Binary)]
    pub payload: payload::Format,

    /// Messages to produce (default 100000), or at most to consume (default: up to the end of
    /// the topic as it was when the run started).
    #[arg(long, conflicts_with = "duration")]
    pub count: Option<u64>,

    /// Produce for this many seconds instead of a fixed count.
    #[arg(long)]
    pub duration: Option<f64>,

    /// Concurrent producer instances, each with its own librdkafka client and thread.
    #[arg(long, default_value_t = 1)]
    pub producers: u32,

    /// Create the topic with this many partitions when it does not exist.
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,

    /// Replication factor used when the topic is created.
    #[arg(long, default_value_t = 1)]
    pub replication_factor: i32,

    /// Topic config set when the topic is created, as key=value (repeatable), for example
    /// min.insync.replicas=2. Freshness runs add their backend's index switch themselves.
    #[arg(long = "topic-config", value_name = "KEY=VALUE")]
    pub topic_config: Vec<String>,

    /// Producer acknowledgements (librdkafka `acks`).
    #[arg(long, value_enum, default_value_t = Acks::One)]
    pub acks: Acks,

    /// Batch compression codec (librdkafka `compression.type`).
    #[arg(long, value_enum, default_value_t = Compression::None)]
    pub compression: Compression,

    /// Time the producer waits to fill a batch (librdkafka `linger.ms`).
    #[arg(long, default_value_t = 5.0)]
    pub linger_ms: f64,

    /// Maximum batch size in bytes (librdkafka `batch.size`); librdkafka's default when unset.
    #[arg(long)]
    pub batch_size: Option<u64>,

    /// Target rate in messages per second over all producers; 0 means as fast as possible.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,

    /// Give every message a key (its sequence number) so the partitioner spreads them by hash.
    #[arg(long)]
    pub keys: bool,

    /// librdkafka `sticky.partitioning.linger.ms`; 0 spreads keyless messages randomly per
    /// message instead of filling one partition's batch at a time.
    #[arg(long)]
    pub sticky_linger_ms: Option<u64>,

    /// Rebalance runs: members of the consumer group.
    #[arg(long, default_value_t = 3)]
    pub consumers: usize,

    /// Produce in transactions of this many records each (per producer; every producer gets
    /// its own transactional.id); the last transaction holds the remainder.
    #[arg(long)]
    pub transaction_records: Option<u64>,

    /// Extra librdkafka properties as key=value (repeatable), applied last.
    #[arg(short = 'X', long = "property", value_name = "KEY=VALUE")]
    pub properties: Vec<String>,

    /// After a produce run, read the topic back and check every acknowledged record.
    #[arg(long)]
    pub verify_readback: bool,

    /// Seconds the check after a produce run waits for the high watermarks to cover every
    /// acknowledged record (followers replicating acks=1 writes) before reporting the rest
    /// missing.
    #[arg(long, default_value_t = 30.0)]
    pub verify_timeout: f64,

    /// Skip the watermark check after a produce run (for topics others write to concurrently).
    #[arg(long)]
    pub no_verify: bool,

    /// Print the final report as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,

    /// Seconds without progress after which a consumer gives up.
    #[arg(long, default_value_t = 30)]
    pub stall_timeout: u64,

    /// The broker's HTTP API (host:port) for freshness runs.
    #[arg(long, default_value = "127.0.0.1:6092")]
    pub http: String,

    /// Where freshness runs look for the records: full-text search, SQL or the vector index.
    #[arg(long, value_enum, default_value_t = freshness::Backend::Search)]
    pub freshness_backend: freshness::Backend,

    /// Milliseconds between freshness polls (the measurement's resolution).
    #[arg(long, default_value_t = 5)]
    pub freshness_poll_ms: u64,

    /// Seconds after the last acknowledgement that records may take to become visible before
    /// the run fails.
    #[arg(long, default_value_t = 60.0)]
    pub freshness_timeout: f64,

    /// Failover runs: shell command that SIGKILLs a broker; `{broker}` becomes its node id.
    #[arg(long)]
    pub kill_command: Option<String>,

    /// Failover runs: shell command that starts the killed broker again (`{broker}` as above);
    /// it must return once the process is launched.
    #[arg(long)]
    pub restart_command: Option<String>,

    /// Failover runs: how many leaders to kill.
    #[arg(long, default_value_t = 10)]
    pub failover_rounds: u32,

    /// Failover runs: the partition whose leader is killed and which the probes write to.
    #[arg(long, default_value_t = 0)]
    pub failover_partition: i32,

    /// Failover runs: milliseconds between probe records.
    #[arg(long, default_value_t = 5)]
    pub probe_interval_ms: u64,

    /// Failover runs: seconds a round may take to fail over, or a restarted broker to rejoin
    /// every ISR, before the run fails.
    #[arg(long, default_value_t = 60.0)]
    pub rejoin_timeout: f64,
}

/// The three kinds of run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Produce messages and measure throughput and send-to-ack latency.
    Produce,
    /// Consume the topic from the beginning up to its current end.
    Consume,
    /// Produce and consume at once and measure produce-to-consume latency.
    RoundTrip,
    /// Produce JSON records and measure acknowledgement-to-queryable time over the HTTP API.
    Freshness,
    /// Kill partition leaders and measure how long until a new leader accepts writes.
    Failover,
    /// Subscribe a consumer group and measure how long until every partition is assigned,
    /// then how long the rest take over when one member leaves.
    Rebalance,
}

/// Producer acknowledgement levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Acks {
    #[value(name = "0")]
    Zero,
    #[value(name = "1")]
    One,
    #[value(name = "all")]
    All,
}

impl Acks {
    pub fn as_config(self) -> &'static str {
        match self {
            Acks::Zero => "0",
            Acks::One => "1",
            Acks::All => "all",
        }
    }
}

/// Compression codecs librdkafka supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn as_config(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl Cli {
    /// Settings shared by every client this tool creates.
    pub fn base_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("client.id", "chronik-bench");
        config
    }

    /// Producer settings derived from the flags, with `-X` overrides applied last.
    pub fn producer_config(&self) -> Result<ClientConfig> {
        let mut config = self.base_config();
        config
            .set("acks", self.acks.as_config())
            .set("compression.type", self.compression.as_config())
            .set("linger.ms", self.linger_ms.to_string());
        if let Some(batch_size) = self.batch_size {
            config.set("batch.size", batch_size.to_string());
        }
        if let Some(sticky) = self.sticky_linger_ms {
            config.set("sticky.partitioning.linger.ms", sticky.to_string());
        }
        self.apply_properties(&mut config)?;
        Ok(config)
    }

    /// Consumer settings: explicit assignment (no group membership), no commits.
    pub fn consumer_config(&self) -> Result<ClientConfig> {
        let mut config = self.base_config();
        // librdkafka needs a group.id for assign(); without subscribe() it never joins the group.
        config
            .set("group.id", format!("chronik-bench-{}", std::process::id()))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false");
        self.apply_properties(&mut config)?;
        Ok(config)
    }

    /// The value `-X` gives `key`, if any.
    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties.iter().rev().find_map(|p| {
            p.split_once('=')
                .filter(|(k, _)| k.trim() == key)
                .map(|(_, v)| v.trim())
        })
    }

    /// Configs for a topic this run creates: `--topic-config`, plus the index switch a
    /// freshness run needs unless given explicitly.
    pub fn topic_configs(&self) -> Result<Vec<(String, String)>> {
        let mut configs = Vec::new();
        for entry in &self.topic_config {
            let Some((key, value)) = entry.split_once('=') else {
                bail!("--topic-config {entry}: expected KEY=VALUE");
            };
            configs.push((key.trim().to_string(), value.trim().to_string()));
        }
        if self.mode == Mode::Freshness {
            let (key, value) = self.freshness_backend.topic_config();
            if !configs.iter().any(|(k, _)| k == key) {
                configs.push((key.to_string(), value.to_string()));
            }
        }
        Ok(configs)
    }

    fn apply_properties(&self, config: &mut ClientConfig) -> Result<()> {
        for property in &self.properties {
            let Some((key, value)) = property.split_once('=') else {
                bail!("-X {property}: expected KEY=VALUE");
            };
            config.set(key.trim(), value.trim());
        }
        Ok(())
    }

    fn validate(&self) -> Result<()> {
        if self.message_size < self.payload.min_len() {
            bail!(
                "--message-size {} is too small: {:?} payloads need at least {} bytes",
                self.message_size,
                self.payload,
                self.payload.min_len()
            );
        }
        if self.mode == Mode::Freshness && self.payload != payload::Format::Json {
            bail!("--mode freshness needs --payload json (indexes parse JSON values)");
        }
        if self.transaction_records == Some(0) {
            bail!("--transaction-records must be at least 1");
        }
        if self.transaction_records.is_some() && self.acks != Acks::All {
            bail!("--transaction-records needs --acks all (transactions are idempotent)");
        }
        if self.mode == Mode::Failover && self.failover_rounds == 0 {
            bail!("--failover-rounds must be at least 1");
        }
        if self.freshness_timeout <= 0.0 || self.rejoin_timeout <= 0.0 {
            bail!("--freshness-timeout and --rejoin-timeout must be positive");
        }
        if Duration::try_from_secs_f64(self.verify_timeout).is_err() {
            bail!("--verify-timeout must be zero or more seconds");
        }
        self.topic_configs()?;
        if self.producers == 0 {
            bail!("--producers must be at least 1");
        }
        if self.partitions < 1 {
            bail!("--partitions must be at least 1");
        }
        if self.duration.is_some_and(|d| d <= 0.0) {
            bail!("--duration must be positive");
        }
        Ok(())
    }

    /// How long a consumer may go without progress before the run fails.
    pub fn stall_timeout(&self) -> Duration {
        Duration::from_secs(self.stall_timeout)
    }
}

fn run(cli: &Cli) -> Result<Report> {
    cli.validate()?;
    match cli.mode {
        Mode::Produce => {
            topic::ensure(cli).context("preparing topic")?;
            let before = topic::watermarks(cli).context("reading watermarks before the run")?;
            let outcome = produce::run(cli, None, false)?;
            let mut report = Report::from_produce(cli, &outcome);
            if !cli.no_verify {
                report.verification = Some(verify::run(cli, &before, &outcome)?);
            }
            Ok(report)
        }
        Mode::Consume => consume::run(cli),
        Mode::RoundTrip => consume::round_trip(cli),
        Mode::Freshness => freshness::run(cli),
        Mode::Failover => failover::run(cli),
        Mode::Rebalance => rebalance::run(cli),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(report) => {
            report.print(cli.json);
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("chronik-bench: error: {error:#}");
            ExitCode::from(2)
        }
    }
}
