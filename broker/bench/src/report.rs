//! Live progress on stderr and the final report (human text or JSON) on stdout.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::failover::FailoverSummary;
use crate::freshness::FreshnessSummary;
use crate::produce::ProduceOutcome;
use crate::rebalance::RebalanceSummary;
use crate::verify::Verification;
use crate::{Cli, Mode};

/// A latency histogram in microseconds with three significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // One microsecond to one hour; larger values are clamped by `saturating_record`.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Counters updated by the workers and printed once a second.
#[derive(Debug)]
pub struct Progress {
    /// Clock origin shared by the run: send timestamps are nanoseconds since this instant.
    pub origin: Instant,
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    /// Payload bytes acknowledged.
    pub bytes: AtomicU64,
    pub consumed: AtomicU64,
    pub consumed_bytes: AtomicU64,
    pub errors: AtomicU64,
    stop: AtomicBool,
    printer: Mutex<Option<JoinHandle<()>>>,
}

impl Progress {
    /// Starts the once-a-second progress printer; `label` names the run on each line.
    pub fn start(label: &'static str) -> Arc<Progress> {
        let progress = Arc::new(Progress {
            origin: Instant::now(),
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            consumed_bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            printer: Mutex::new(None),
        });
        let printer = {
            let progress = Arc::clone(&progress);
            thread::spawn(move || progress.print_loop(label))
        };
        *progress.printer.lock().expect("printer poisoned") = Some(printer);
        progress
    }

    /// Stops the printer (idempotent).
    pub fn finish(&self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(printer) = self.printer.lock().expect("printer poisoned").take() {
            let _ = printer.join();
        }
    }

    fn print_loop(&self, label: &str) {
        let mut last = (0u64, 0u64, 0u64);
        let mut tick = self.origin;
        while !self.stop.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(50));
            if tick.elapsed() < Duration::from_secs(1) {
                continue;
            }
            let secs = tick.elapsed().as_secs_f64();
            tick = Instant::now();
            let acked = self.acked.load(Ordering::Relaxed);
            let bytes = self.bytes.load(Ordering::Relaxed);
            let consumed = self.consumed.load(Ordering::Relaxed);
            let sent = self.sent.load(Ordering::Relaxed);
            let mut line = format!("[{:>5.0}s] {label}:", self.origin.elapsed().as_secs_f64());
            if sent > 0 || acked > 0 {
                line += &format!(
                    " acked {acked} ({:.0} msg/s, {:.1} MB/s), in flight {}",
                    (acked - last.0) as f64 / secs,
                    (bytes - last.1) as f64 / secs / 1e6,
                    sent.saturating_sub(acked)
                );
            }
            if consumed > 0 || label != "produce" {
                line += &format!(
                    " consumed {consumed} ({:.0} msg/s)",
                    (consumed - last.2) as f64 / secs
                );
            }
            line += &format!(", errors {}", self.errors.load(Ordering::Relaxed));
            eprintln!("{line}");
            last = (acked, bytes, consumed);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct LatencySummary {
    pub samples: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

impl LatencySummary {
    pub fn from_histogram(histogram: &Histogram<u64>) -> Option<LatencySummary> {
        (!histogram.is_empty()).then(|| LatencySummary {
            samples: histogram.len(),
            p50_us: histogram.value_at_quantile(0.50),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            max_us: histogram.max(),
            mean_us: histogram.mean(),
        })
    }

    pub fn line(&self) -> String {
        let ms = |us: u64| us as f64 / 1000.0;
        format!(
            "p50 {:.3}  p99 {:.3}  p999 {:.3}  max {:.3}  mean {:.3}",
            ms(self.p50_us),
            ms(self.p99_us),
            ms(self.p999_us),
            ms(self.max_us),
            self.mean_us / 1000.0
        )
    }
}

/// The run's parameters, echoed in the report so a JSON line is self-describing.
#[derive(Debug, Serialize)]
pub struct RunParameters {
    pub bootstrap: String,
    pub topic: String,
    pub message_size: usize,
    pub producers: u32,
    pub acks: String,
    pub compression: String,
    pub linger_ms: f64,
    pub rate: u64,
    pub keys: bool,
}

/// The final report of one run.
#[derive(Debug, Serialize)]
pub struct Report {
    pub mode: String,
    pub parameters: RunParameters,
    pub messages: u64,
    /// Payload bytes (keys and record overhead excluded).
    pub bytes: u64,
    pub elapsed_secs: f64,
    pub msgs_per_sec: f64,
    /// Payload megabytes (10^6 bytes) per second.
    pub mb_per_sec: f64,
    pub errors: u64,
    pub error_samples: Vec<String>,
    /// Send-to-acknowledgement latency of produced messages.
    pub produce_latency: Option<LatencySummary>,
    /// When the slowest acknowledged message was sent (Unix milliseconds), to find what the
    /// broker was doing then.
    pub slowest_ack_sent_unix_ms: Option<u64>,
    /// Send-to-consume latency (round-trip mode).
    pub end_to_end_latency: Option<LatencySummary>,
    /// Acknowledgement-to-queryable time (freshness mode).
    pub freshness: Option<FreshnessSummary>,
    /// Leader failover times (failover mode).
    pub failover: Option<FailoverSummary>,
    /// Consumer group rebalance times (rebalance mode).
    pub rebalance: Option<RebalanceSummary>,
    pub verification: Option<Verification>,
}

impl Report {
    pub fn new(cli: &Cli, messages: u64, bytes: u64, elapsed: Duration) -> Report {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let mode = match cli.mode {
            Mode::Produce => "produce",
            Mode::Consume => "consume",
            Mode::RoundTrip => "round-trip",
            Mode::Freshness => "freshness",
            Mode::Failover => "failover",
            Mode::Rebalance => "rebalance",
        };
        Report {
            mode: mode.to_string(),
            parameters: RunParameters {
                bootstrap: cli.bootstrap.clone(),
                topic: cli.topic.clone(),
                message_size: cli.message_size,
                producers: cli.producers,
                acks: cli.acks.as_config().to_string(),
                compression: cli.compression.as_config().to_string(),
                linger_ms: cli.linger_ms,
                rate: cli.rate,
                keys: cli.keys,
            },
            messages,
            bytes,
            elapsed_secs: elapsed.as_secs_f64(),
            msgs_per_sec: messages as f64 / secs,
            mb_per_sec: bytes as f64 / secs / 1e6,
            errors: 0,
            error_samples: Vec::new(),
            produce_latency: None,
            slowest_ack_sent_unix_ms: None,
            end_to_end_latency: None,
            freshness: None,
            failover: None,
            rebalance: None,
            verification: None,
        }
    }

    pub fn from_produce(cli: &Cli, outcome: &ProduceOutcome) -> Report {
        let mut report = Report::new(cli, outcome.acked, outcome.acked_bytes, outcome.elapsed);
        report.errors = outcome.errors;
        report.error_samples = outcome.error_samples.clone();
        report.produce_latency = LatencySummary::from_histogram(&outcome.latency);
        report.slowest_ack_sent_unix_ms = outcome
            .slowest_sent_at
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as u64);
        report
    }

    /// Whether the run is a valid measurement: no errors and no failed verification.
    pub fn passed(&self) -> bool {
        self.errors == 0
            && self.verification.as_ref().is_none_or(|v| v.ok)
            && self.freshness.as_ref().is_none_or(|f| f.not_visible == 0)
    }

    pub fn print(&self, json: bool) {
        if !self.passed() {
            eprintln!("chronik-bench: RUN FAILED: {}", self.failure_summary());
        }
        if json {
            match serde_json::to_string(self) {
                Ok(line) => println!("{line}"),
                Err(error) => eprintln!("chronik-bench: cannot encode report: {error}"),
            }
            return;
        }
        let p = &self.parameters;
        println!(
            "chronik-bench {}: topic {} on {}, {} B messages, {} producer(s), acks={}, \
             compression={}, linger.ms={}, rate={}",
            self.mode,
            p.topic,
            p.bootstrap,
            p.message_size,
            p.producers,
            p.acks,
            p.compression,
            p.linger_ms,
            if p.rate == 0 {
                "unlimited".to_string()
            } else {
                format!("{}/s", p.rate)
            }
        );
        println!("  messages     {}", self.messages);
        println!("  bytes        {}", self.bytes);
        println!("  elapsed      {:.3} s", self.elapsed_secs);
        println!(
            "  throughput   {:.0} msg/s, {:.2} MB/s",
            self.msgs_per_sec, self.mb_per_sec
        );
        if let Some(latency) = &self.produce_latency {
            println!("  produce ms   {} (send to ack)", latency.line());
            if let Some(sent) = self.slowest_ack_sent_unix_ms {
                println!(
                    "  slowest ack  sent at {}.{:03} (Unix seconds)",
                    sent / 1000,
                    sent % 1000
                );
            }
        }
        if let Some(latency) = &self.end_to_end_latency {
            println!("  e2e ms       {} (send to consume)", latency.line());
        }
        if let Some(freshness) = &self.freshness {
            println!("  freshness ms {}", freshness.line());
            for sample in &freshness.error_samples {
                println!("    poll error: {sample}");
            }
        }
        if let Some(failover) = &self.failover {
            println!("  failover ms  {}", failover.line());
        }
        if let Some(rebalance) = &self.rebalance {
            println!("  rebalance ms {}", rebalance.line());
        }
        println!("  errors       {}", self.errors);
        for sample in &self.error_samples {
            println!("    {sample}");
        }
        if let Some(verification) = &self.verification {
            println!("  verification {}", verification.summary());
        }
    }

    fn failure_summary(&self) -> String {
        let mut reasons = Vec::new();
        if self.errors > 0 {
            reasons.push(format!("{} errors", self.errors));
        }
        if let Some(v) = self.verification.as_ref().filter(|v| !v.ok) {
            reasons.push(v.summary());
        }
        if let Some(f) = self.freshness.as_ref().filter(|f| f.not_visible > 0) {
            reasons.push(format!(
                "{} acknowledged records never became visible",
                f.not_visible
            ));
        }
        reasons.join("; ")
    }
}
