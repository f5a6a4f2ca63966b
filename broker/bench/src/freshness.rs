//! `--mode freshness`: how long after its produce acknowledgement a record becomes queryable.
//!
//! The producers send JSON records at `--rate` into a topic that indexes them (created with
//! `searchable.enabled=true`, or `columnar.enabled=true` for the SQL backend) while a poller asks
//! the broker's HTTP API, every `--freshness-poll-ms`, for the highest visible offset of each
//! partition. Indexers publish a partition's records in offset order, so when the highest
//! visible offset reaches N every acknowledged offset up to N is visible; the poller stamps each
//! advance, and a record's freshness is the first stamp covering its offset minus the moment its
//! acknowledgement arrived. A stamp is taken when the poll's answer arrives, so figures are upper
//! bounds with a resolution of one poll interval plus one poll round trip (both reported).
//!
//! Records still invisible `--freshness-timeout` seconds after the last acknowledgement make
//! the run fail. The produce run is verified like any other (watermarks, read-back).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::ValueEnum;
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{json, Value};

use crate::consume::Offsets;
use crate::http::JsonClient;
use crate::produce::{self, Acked};
use crate::report::{new_histogram, LatencySummary, Progress, Report};
use crate::{payload, topic, verify, Cli};

/// Which query interface the poller asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// `POST /{topic}/_search`: a terms aggregation on `_partition` with a max of `_offset`.
    Search,
    /// `POST /_sql`: `SELECT _partition, MAX(_offset) ... GROUP BY _partition`.
    Sql,
    /// `GET /_vector/{topic}/stats`: each partition's published offset (its points below it
    /// are what a vector query can find). Topic created with `vector.enabled=true`; the
    /// broker embeds each record's value with its embedding provider.
    Vector,
}

impl Backend {
    /// The topic config that makes the topic queryable through this backend.
    pub fn topic_config(self) -> (&'static str, &'static str) {
        match self {
            Backend::Search => ("searchable.enabled", "true"),
            Backend::Sql => ("columnar.enabled", "true"),
            Backend::Vector => ("vector.enabled", "true"),
        }
    }
}

/// The freshness part of a report.
#[derive(Debug, Serialize)]
pub struct FreshnessSummary {
    pub backend: Backend,
    pub http: String,
    pub poll_interval_ms: u64,
    pub polls: u64,
    pub poll_errors: u64,
    /// Mean time from sending a poll to having its answer.
    pub mean_poll_ms: f64,
    /// Acknowledgement-to-visible time of every acknowledged record that became visible.
    pub latency: Option<LatencySummary>,
    /// Acknowledged records never seen through the backend before the timeout.
    pub not_visible: u64,
    /// Records seen before their acknowledgement reached the client (counted as 0).
    pub visible_before_ack: u64,
    /// The first poll failures, for the report.
    pub error_samples: Vec<String>,
}

impl FreshnessSummary {
    pub fn line(&self) -> String {
        let latency = self
            .latency
            .as_ref()
            .map_or_else(|| "no samples".to_string(), LatencySummary::line);
        let mut line = format!(
            "{latency} (ack to visible via {}; {} polls every {} ms, mean poll {:.2} ms)",
            match self.backend {
                Backend::Search => "_search",
                Backend::Sql => "_sql",
                Backend::Vector => "_vector stats",
            },
            self.polls,
            self.poll_interval_ms,
            self.mean_poll_ms
        );
        if self.not_visible > 0 {
            line += &format!(", {} NOT VISIBLE", self.not_visible);
        }
        line
    }
}

/// Asks a backend for the highest visible offset of each partition.
trait VisibilityProbe {
    /// The highest visible offset of each partition that has one above `known`'s entry;
    /// partitions without anything newer may be left out.
    fn newer_than(&mut self, known: &Offsets) -> Result<Offsets>;
}

/// The `_search` backend.
struct SearchProbe {
    client: JsonClient,
    path: String,
}

impl VisibilityProbe for SearchProbe {
    fn newer_than(&mut self, known: &Offsets) -> Result<Offsets> {
        // Only documents above what is already known match, so a poll scans the new ones.
        let should: Vec<Value> = known
            .iter()
            .map(|(&p, &offset)| {
                json!({"bool": {"filter": [
                    {"term": {"_partition": p}},
                    {"range": {"_offset": {"gt": offset}}},
                ]}})
            })
            .collect();
        let body = json!({
            "size": 0,
            "track_total_hits": false,
            "query": {"bool": {"should": should, "minimum_should_match": 1}},
            "aggs": {"partitions": {
                "terms": {"field": "_partition", "size": known.len().max(1)},
                "aggs": {"max_offset": {"max": {"field": "_offset"}}},
            }},
        });
        parse_search_answer(&self.client.post(&self.path, &body)?)
    }
}

struct VectorProbe {
    client: JsonClient,
    path: String,
}

impl VisibilityProbe for VectorProbe {
    fn newer_than(&mut self, _known: &Offsets) -> Result<Offsets> {
        parse_vector_stats(&self.client.get(&self.path)?)
    }
}

/// Highest visible offset of each partition from `/_vector/{topic}/stats` (published offset
/// minus one; partitions with nothing published are left out).
fn parse_vector_stats(answer: &Value) -> Result<Offsets> {
    let partitions = answer
        .get("partitions")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("stats answer without [partitions]: {answer}"))?;
    let mut out = Offsets::new();
    for p in partitions {
        let (Some(partition), Some(published)) = (
            p.get("partition").and_then(Value::as_i64),
            p.get("published_offset").and_then(Value::as_i64),
        ) else {
            bail!("stats partition without partition/published_offset: {p}");
        };
        if published > 0 {
            out.insert(partition as i32, published - 1);
        }
    }
    Ok(out)
}

/// Highest offsets from the terms-over-max aggregation of a `_search` answer.
fn parse_search_answer(answer: &Value) -> Result<Offsets> {
    let buckets = answer
        .pointer("/aggregations/partitions/buckets")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("search answer without aggregations.partitions.buckets"))?;
    let mut offsets = Offsets::new();
    for bucket in buckets {
        let partition = bucket.get("key").and_then(Value::as_f64);
        let offset = bucket.pointer("/max_offset/value").and_then(Value::as_f64);
        match (partition, offset) {
            (Some(p), Some(o)) => {
                offsets.insert(p as i32, o as i64);
            }
            _ => bail!("unexpected aggregation bucket {bucket}"),
        }
    }
    Ok(offsets)
}

/// The SQL backend over SPEC 5.1's `POST /_sql`.
struct SqlProbe {
    client: JsonClient,
    table: String,
}

impl VisibilityProbe for SqlProbe {
    fn newer_than(&mut self, known: &Offsets) -> Result<Offsets> {
        let filter = known
            .iter()
            .map(|(p, offset)| format!("(_partition = {p} AND _offset > {offset})"))
            .collect::<Vec<_>>()
            .join(" OR ");
        let query = format!(
            "SELECT _partition, MAX(_offset) AS max_offset FROM \"{}\" WHERE {} GROUP BY _partition",
            self.table,
            if filter.is_empty() { "TRUE" } else { &filter }
        );
        parse_sql_answer(&self.client.post("/_sql", &json!({"query": query}))?)
    }
}

/// Highest offsets from the `{"columns", "rows"}` answer of the SQL query.
fn parse_sql_answer(answer: &Value) -> Result<Offsets> {
    let rows = answer
        .get("rows")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("SQL answer without rows"))?;
    let mut offsets = Offsets::new();
    for row in rows {
        let cell = |i: usize| row.get(i).and_then(Value::as_i64);
        match (cell(0), cell(1)) {
            (Some(p), Some(o)) => {
                offsets.insert(i32::try_from(p)?, o);
            }
            // MAX over no rows of a group cannot happen with GROUP BY; anything else is wrong.
            _ => bail!("unexpected SQL row {row}"),
        }
    }
    Ok(offsets)
}

/// SPEC 5.1: non-alphanumeric characters of a topic name become `_` in its table name.
pub fn table_name(topic: &str) -> String {
    topic
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// When each partition's highest visible offset advanced: (offset, nanoseconds since origin).
pub type Timelines = BTreeMap<i32, Vec<(i64, u64)>>;

/// What matching acknowledgements against visibility found.
#[derive(Debug)]
pub struct Matched {
    pub histogram: Histogram<u64>,
    pub not_visible: u64,
    pub visible_before_ack: u64,
}

/// Freshness of every acknowledged record: the first advance of its partition's visible offset
/// that covers its offset, minus its acknowledgement time. Pure, for testing without a broker.
pub fn match_acks(acked: &[Acked], timelines: &Timelines) -> Matched {
    let mut matched = Matched {
        histogram: new_histogram(),
        not_visible: 0,
        visible_before_ack: 0,
    };
    for record in acked {
        let visible = timelines.get(&record.partition).and_then(|timeline| {
            let at = timeline.partition_point(|&(offset, _)| offset < record.offset);
            timeline.get(at).map(|&(_, nanos)| nanos)
        });
        match visible {
            None => matched.not_visible += 1,
            Some(nanos) if nanos < record.acked_nanos => {
                matched.visible_before_ack += 1;
                matched.histogram.saturating_record(1);
            }
            Some(nanos) => {
                let us = (nanos - record.acked_nanos) / 1_000;
                matched.histogram.saturating_record(us.max(1));
            }
        }
    }
    matched
}

/// What the poller thread hands back.
#[derive(Default)]
struct PollLog {
    timelines: Timelines,
    polls: u64,
    errors: u64,
    poll_nanos: u64,
    error_samples: Vec<String>,
    /// A failure that makes further polling pointless (bad topic, wrong backend).
    fatal: Option<String>,
}

/// Polls until `target` is set and visible, `stop` is raised, or the timeout after `target`
/// passes.
fn poll_loop(
    probe: &mut dyn VisibilityProbe,
    cli: &Cli,
    origin: Instant,
    start: Offsets,
    target: &OnceLock<(Offsets, Instant)>,
    stop: &AtomicBool,
) -> PollLog {
    let mut log = PollLog::default();
    let mut known = start;
    let interval = Duration::from_millis(cli.freshness_poll_ms);
    let timeout = Duration::from_secs_f64(cli.freshness_timeout);
    let mut consecutive_errors = 0u32;
    loop {
        if let Some((target, since)) = target.get() {
            let reached = target
                .iter()
                .all(|(p, &t)| known.get(p).is_some_and(|&k| k >= t));
            if reached || since.elapsed() > timeout {
                return log;
            }
        }
        if stop.load(Ordering::Relaxed) {
            return log;
        }
        let sent = Instant::now();
        let answer = probe.newer_than(&known);
        let now = payload::nanos_since(origin);
        log.polls += 1;
        log.poll_nanos += u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX);
        match answer {
            Ok(visible) => {
                consecutive_errors = 0;
                for (partition, offset) in visible {
                    let entry = known.entry(partition).or_insert(-1);
                    if offset > *entry {
                        *entry = offset;
                        log.timelines
                            .entry(partition)
                            .or_default()
                            .push((offset, now));
                    }
                }
            }
            Err(error) => {
                log.errors += 1;
                consecutive_errors += 1;
                let text = format!("{error:#}");
                if log.error_samples.len() < 5 {
                    log.error_samples.push(text.clone());
                }
                // A 4xx (topic unknown or not indexed, query refused) will not heal; connection
                // trouble may be a broker under load, so it gets a few tries.
                if text.contains("status 4") || consecutive_errors >= 50 {
                    log.fatal = Some(text);
                    return log;
                }
            }
        }
        let spent = sent.elapsed();
        if spent < interval {
            thread::sleep(interval - spent);
        }
    }
}

/// Runs `--mode freshness`.
pub fn run(cli: &Cli) -> Result<Report> {
    topic::ensure(cli).context("preparing topic")?;
    let before = topic::watermarks(cli).context("reading watermarks before the run")?;
    // Offsets below the run's first are already visible or irrelevant.
    let start: Offsets = before
        .iter()
        .map(|(&p, &(_, high))| (p, high - 1))
        .collect();
    let timeout = Duration::from_secs(10);
    let mut probe: Box<dyn VisibilityProbe + Send> = match cli.freshness_backend {
        Backend::Search => Box::new(SearchProbe {
            client: JsonClient::new(&cli.http, timeout),
            path: format!("/{}/_search", cli.topic),
        }),
        Backend::Sql => Box::new(SqlProbe {
            client: JsonClient::new(&cli.http, timeout),
            table: table_name(&cli.topic),
        }),
        Backend::Vector => Box::new(VectorProbe {
            client: JsonClient::new(&cli.http, timeout),
            path: format!("/_vector/{}/stats", cli.topic),
        }),
    };
    // Fail before producing when the backend cannot answer at all.
    probe
        .newer_than(&start)
        .with_context(|| format!("first poll of {}", cli.http))?;

    let progress = Progress::start("freshness");
    let target = OnceLock::new();
    let stop = AtomicBool::new(false);
    let poll_log = Mutex::new(None);
    let produced = thread::scope(|scope| {
        scope.spawn(|| {
            let log = poll_loop(
                probe.as_mut(),
                cli,
                progress.origin,
                start.clone(),
                &target,
                &stop,
            );
            *poll_log.lock().expect("poll log poisoned") = Some(log);
        });
        let produced = produce::run(cli, Some(Arc::clone(&progress)), true);
        match &produced {
            Ok(outcome) => {
                let wanted: Offsets = outcome
                    .partitions
                    .iter()
                    .filter(|(_, acks)| acks.max_offset >= 0)
                    .map(|(&p, acks)| (p, acks.max_offset))
                    .collect();
                let _ = target.set((wanted, Instant::now()));
            }
            Err(_) => stop.store(true, Ordering::Relaxed),
        }
        produced
    });
    let produced = produced?;
    let log = poll_log
        .into_inner()
        .expect("poll log poisoned")
        .ok_or_else(|| anyhow!("poller ended without a result"))?;

    let matched = match_acks(&produced.acked_records, &log.timelines);
    let mut report = Report::from_produce(cli, &produced);
    if let Some(fatal) = &log.fatal {
        report.errors += 1;
        report
            .error_samples
            .push(format!("freshness poll: {fatal}"));
    }
    report.freshness = Some(FreshnessSummary {
        backend: cli.freshness_backend,
        http: cli.http.clone(),
        poll_interval_ms: cli.freshness_poll_ms,
        polls: log.polls,
        poll_errors: log.errors,
        mean_poll_ms: log.poll_nanos as f64 / log.polls.max(1) as f64 / 1e6,
        latency: LatencySummary::from_histogram(&matched.histogram),
        not_visible: matched.not_visible,
        visible_before_ack: matched.visible_before_ack,
        error_samples: log.error_samples,
    });
    if !cli.no_verify {
        report.verification = Some(verify::run(cli, &before, &produced)?);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(partition: i32, offset: i64, acked_nanos: u64) -> Acked {
        Acked {
            partition,
            offset,
            seq: 0,
            acked_nanos,
        }
    }

    #[test]
    fn vector_stats_give_the_last_published_offset_of_each_partition() {
        let answer = json!({"partitions": [
            {"partition": 0, "published_offset": 10},
            {"partition": 1, "published_offset": 0},
            {"partition": 2, "published_offset": 1},
        ]});
        assert_eq!(
            parse_vector_stats(&answer).unwrap(),
            Offsets::from([(0, 9), (2, 0)])
        );
        assert!(parse_vector_stats(&json!({"error": "x"})).is_err());
        assert!(parse_vector_stats(&json!({"partitions": [{"partition": 0}]})).is_err());
    }

    #[test]
    fn each_record_is_stamped_by_the_first_advance_that_covers_it() {
        let timelines = Timelines::from([
            (0, vec![(1, 5_000_000), (4, 9_000_000)]),
            (1, vec![(0, 2_000_000)]),
        ]);
        let acked = [
            ack(0, 0, 1_000_000), // covered by the first advance: 4 ms
            ack(0, 1, 3_000_000), // 2 ms
            ack(0, 3, 4_000_000), // second advance: 5 ms
            ack(1, 0, 2_500_000), // visible before its ack reached the client
            ack(0, 5, 1_000_000), // never visible
            ack(2, 0, 1_000_000), // partition never seen
        ];
        let matched = match_acks(&acked, &timelines);
        assert_eq!(matched.not_visible, 2);
        assert_eq!(matched.visible_before_ack, 1);
        assert_eq!(matched.histogram.len(), 4);
        // Three significant digits: max() is the top of 5 ms's bucket, not 5000 exactly.
        assert!(matched
            .histogram
            .equivalent(matched.histogram.max(), 5_000 /* us */));
        assert!(matched.histogram.equivalent(matched.histogram.min(), 1));
    }

    #[test]
    fn search_answer_buckets_become_offsets_and_malformed_answers_are_errors() {
        let answer = json!({"aggregations": {"partitions": {"buckets": [
            {"key": 0, "doc_count": 3, "max_offset": {"value": 41.0}},
            {"key": 2.0, "doc_count": 1, "max_offset": {"value": 7}},
        ]}}});
        let offsets = parse_search_answer(&answer).expect("parsed");
        assert_eq!(offsets, Offsets::from([(0, 41), (2, 7)]));
        assert!(parse_search_answer(&json!({"hits": {}})).is_err());
        let null_max = json!({"aggregations": {"partitions": {"buckets": [
            {"key": 0, "doc_count": 0, "max_offset": {"value": null}},
        ]}}});
        assert!(parse_search_answer(&null_max).is_err());
    }

    #[test]
    fn sql_rows_become_offsets() {
        let answer = json!({"columns": [{"name": "_partition"}, {"name": "max_offset"}],
            "rows": [[0, 10], [1, 3]], "row_count": 2});
        assert_eq!(
            parse_sql_answer(&answer).expect("parsed"),
            Offsets::from([(0, 10), (1, 3)])
        );
        assert!(parse_sql_answer(&json!({"rows": [[0, null]]})).is_err());
    }

    #[test]
    fn table_names_follow_the_spec() {
        assert_eq!(table_name("orders.eu-1"), "orders_eu_1");
    }
}
