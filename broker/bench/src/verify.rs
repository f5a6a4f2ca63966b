//! After a produce run: is what the broker acknowledged really stored?
//!
//! Two checks. The watermark check compares, per partition, the acknowledgements with how far
//! the high watermark advanced during the run, and checks that every acknowledged offset lies
//! between the low and high watermarks. Because a replicated partition's high watermark trails
//! acks=1 acknowledgements until the followers have the records, the watermarks are polled for
//! up to `--verify-timeout` seconds until they cover every acknowledgement; what is still not
//! covered then is reported missing. The decision is `judge`, a pure function of the
//! acknowledgements and one observation. The optional read-back (`--verify-readback`) consumes
//! the range the run appended and checks every acknowledged (partition, offset) holds the
//! payload that was sent, byte for byte.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::consume::{self, Offsets, ReadRange};
use crate::produce::{Acked, PartitionAcks, ProduceOutcome};
use crate::topic::{self, Watermarks};
use crate::Cli;

/// How many individual problems a report lists before summarising.
const MAX_PROBLEMS: usize = 10;

/// The outcome of the checks.
#[derive(Debug, Serialize)]
pub struct Verification {
    pub ok: bool,
    /// Messages the broker acknowledged.
    pub acknowledged: u64,
    /// Records appended during the run: sum over partitions of the high watermark's advance.
    pub stored: i64,
    /// How long the high watermarks took to cover the acknowledgements (replication lag with
    /// acks=1), or how long the check waited before giving up.
    pub waited_ms: u64,
    pub readback: Option<Readback>,
    /// Human-readable descriptions of what did not match (at most `MAX_PROBLEMS`).
    pub problems: Vec<String>,
}

/// Result of reading the acknowledged records back.
#[derive(Debug, Serialize)]
pub struct Readback {
    pub expected: u64,
    pub intact: u64,
    /// Present at the acknowledged offset but with another sequence number or other bytes.
    pub mismatched: u64,
    pub missing: u64,
}

impl Verification {
    /// Records a problem and marks the verification failed.
    pub fn fail(&mut self, problem: String) {
        self.ok = false;
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(problem);
        }
    }

    pub fn summary(&self) -> String {
        let mut text = format!(
            "{}: acknowledged {}, stored {} (watermarks",
            if self.ok { "OK" } else { "FAILED" },
            self.acknowledged,
            self.stored
        );
        if self.waited_ms > 0 {
            let verb = if self.ok { "settled after" } else { "waited" };
            text += &format!(", {verb} {} ms", self.waited_ms);
        }
        text += ")";
        if let Some(r) = &self.readback {
            text += &format!(
                "; read back {}/{} intact, {} mismatched, {} missing",
                r.intact, r.expected, r.mismatched, r.missing
            );
        }
        for problem in &self.problems {
            text += &format!("\n    {problem}");
        }
        text
    }
}

/// Runs the watermark check and, with `--verify-readback`, the read-back.
pub fn run(cli: &Cli, before: &Watermarks, outcome: &ProduceOutcome) -> Result<Verification> {
    let observed = observe(cli, before, outcome)?;
    check(cli, before, outcome, observed)
}

/// How long the watermarks may take to cover every acknowledgement, from `--verify-timeout`.
fn patience(cli: &Cli) -> Duration {
    Duration::from_secs_f64(cli.verify_timeout)
}

/// Between watermark polls while replication catches up.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The watermarks the checks judge, and how it came to them.
#[derive(Debug)]
pub struct Observed {
    pub after: Watermarks,
    pub judgement: Judgement,
    pub waited: Duration,
}

/// Polls the watermarks until they cover every acknowledgement, show a loss, or
/// `--verify-timeout` runs out.
///
/// With acks=1 (or 0) on a replicated topic the leader acknowledges before its followers have
/// the records, and the high watermark, the end of what consumers may read, advances only once
/// they do; judging right after the last acknowledgement would count records in flight to the
/// followers as lost. Errors reading the watermarks (a leader moving) are retried within the
/// same deadline.
pub fn observe(cli: &Cli, before: &Watermarks, outcome: &ProduceOutcome) -> Result<Observed> {
    let patience = patience(cli);
    let started = Instant::now();
    let mut announced = false;
    loop {
        let waited = started.elapsed();
        let after = match topic::watermarks(cli) {
            Ok(after) => after,
            Err(error) if waited < patience => {
                eprintln!("verify: reading watermarks failed, retrying: {error:#}");
                thread::sleep(POLL_INTERVAL);
                continue;
            }
            Err(error) => {
                return Err(error.context(format!(
                    "reading watermarks after the run (retried for {:.1} s)",
                    waited.as_secs_f64()
                )))
            }
        };
        let judgement = judge(&outcome.partitions, before, &after, waited, patience);
        match &judgement {
            Judgement::Waiting(shortfalls) => {
                if !announced {
                    announced = true;
                    eprintln!(
                        "verify: high watermarks do not yet cover {} acknowledged records; \
                         waiting up to {:.0} s for replication",
                        missing_total(shortfalls),
                        patience.as_secs_f64()
                    );
                }
                thread::sleep(POLL_INTERVAL);
            }
            Judgement::Stored | Judgement::Lost(_) => {
                if announced {
                    let outcome = if judgement == Judgement::Stored {
                        "watermarks cover every acknowledgement"
                    } else {
                        "acknowledged records still missing"
                    };
                    eprintln!("verify: {outcome} after {:.1} s", waited.as_secs_f64());
                }
                return Ok(Observed {
                    after,
                    judgement,
                    waited,
                });
            }
        }
    }
}

/// Turns an observation into the verification, reading the records back with
/// `--verify-readback`.
pub fn check(
    cli: &Cli,
    before: &Watermarks,
    outcome: &ProduceOutcome,
    observed: Observed,
) -> Result<Verification> {
    let Observed {
        after,
        judgement,
        waited,
    } = observed;
    let mut verification = Verification {
        ok: true,
        acknowledged: outcome.acked,
        stored: stored(before, &after),
        waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
        readback: None,
        problems: Vec::new(),
    };
    match judgement {
        Judgement::Stored => {}
        // Only `observe` decides when to stop waiting; a caller judging once gets here.
        Judgement::Waiting(shortfalls) | Judgement::Lost(shortfalls) => {
            verification.fail(format!(
                "at least {} acknowledged records missing after waiting {:.1} s for the high \
                 watermarks",
                missing_total(&shortfalls),
                waited.as_secs_f64()
            ));
            for shortfall in &shortfalls {
                verification.fail(shortfall.to_string());
            }
        }
    }
    if i64::try_from(outcome.acked).unwrap_or(i64::MAX) > verification.stored {
        verification.fail(format!(
            "{} messages acknowledged but only {} stored",
            outcome.acked, verification.stored
        ));
    }
    if cli.verify_readback {
        read_back(
            cli,
            before,
            &after,
            &outcome.acked_records,
            &mut verification,
        )?;
    }
    Ok(verification)
}

/// Records appended during the run: the high watermarks' advance summed over partitions.
fn stored(before: &Watermarks, after: &Watermarks) -> i64 {
    after
        .iter()
        .map(|(partition, &(_, high))| high - before.get(partition).map_or(0, |&(_, h)| h))
        .sum()
}

/// What one observation of the watermarks says about the acknowledged records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// Every acknowledged record lies between its partition's low and high watermarks.
    Stored,
    /// Some acknowledged records are not below the high watermark yet, and there is time left
    /// for it to advance.
    Waiting(Vec<Shortfall>),
    /// Acknowledged records are gone: removed below the low watermark, their partition vanished,
    /// or the high watermark still did not cover them when the time ran out.
    Lost(Vec<Shortfall>),
}

/// How one partition falls short of its acknowledgements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    pub partition: i32,
    /// A lower bound of the acknowledged records not readable in this partition.
    pub missing: u64,
    pub reason: ShortfallReason,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShortfallReason {
    /// The high watermark has not reached every acknowledged record; it may still advance.
    Behind {
        acknowledged: u64,
        high_before: i64,
        high: i64,
        max_offset: i64,
    },
    /// The low watermark passed the run's first offset: records were deleted.
    Removed { low: i64, high_before: i64 },
    /// The partition is no longer in the topic's metadata.
    Gone { acknowledged: u64 },
}

impl std::fmt::Display for Shortfall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Shortfall {
            partition, missing, ..
        } = self;
        match &self.reason {
            ShortfallReason::Behind {
                acknowledged,
                high_before,
                high,
                max_offset,
            } => write!(
                f,
                "partition {partition}: {acknowledged} acknowledged but the high watermark \
                 advanced by only {} ({high_before} -> {high}), highest acknowledged offset \
                 {max_offset}: at least {missing} missing",
                high - high_before
            ),
            ShortfallReason::Removed { low, high_before } => write!(
                f,
                "partition {partition}: low watermark {low} passed the run's first offset \
                 {high_before}: at least {missing} acknowledged records removed"
            ),
            ShortfallReason::Gone { acknowledged } => write!(
                f,
                "partition {partition}: {acknowledged} acknowledged but the partition is gone"
            ),
        }
    }
}

fn missing_total(shortfalls: &[Shortfall]) -> u64 {
    shortfalls.iter().map(|s| s.missing).sum()
}

/// Decides, from one observation, whether the acknowledged records are stored, may still
/// become readable (`waited` is below `patience`), or are lost.
///
/// A partition's acknowledgements are covered when its high watermark advanced by at least
/// their count and lies above the highest acknowledged offset (acks=0 reports no offsets, so
/// only the count applies). A low watermark past the run's first offset or a vanished partition
/// is a loss at once: waiting cannot bring the records back.
pub fn judge(
    acks: &BTreeMap<i32, PartitionAcks>,
    before: &Watermarks,
    after: &Watermarks,
    waited: Duration,
    patience: Duration,
) -> Judgement {
    let mut behind = Vec::new();
    let mut lost = Vec::new();
    for (&partition, partition_acks) in acks {
        if partition_acks.count == 0 {
            continue;
        }
        let high_before = before.get(&partition).map_or(0, |&(_, high)| high);
        let Some(&(low, high)) = after.get(&partition) else {
            lost.push(Shortfall {
                partition,
                missing: partition_acks.count,
                reason: ShortfallReason::Gone {
                    acknowledged: partition_acks.count,
                },
            });
            continue;
        };
        if low > high_before {
            lost.push(Shortfall {
                partition,
                missing: u64::try_from(low - high_before)
                    .unwrap_or(0)
                    .clamp(1, partition_acks.count),
                reason: ShortfallReason::Removed { low, high_before },
            });
            continue;
        }
        let appended = u64::try_from(high - high_before).unwrap_or(0);
        let uncovered_offset = partition_acks.max_offset >= high;
        if partition_acks.count > appended || uncovered_offset {
            behind.push(Shortfall {
                partition,
                missing: (partition_acks.count.saturating_sub(appended))
                    .max(u64::from(uncovered_offset)),
                reason: ShortfallReason::Behind {
                    acknowledged: partition_acks.count,
                    high_before,
                    high,
                    max_offset: partition_acks.max_offset,
                },
            });
        }
    }
    if !lost.is_empty() {
        lost.extend(behind);
        Judgement::Lost(lost)
    } else if behind.is_empty() {
        Judgement::Stored
    } else if waited < patience {
        Judgement::Waiting(behind)
    } else {
        Judgement::Lost(behind)
    }
}

fn read_back(
    cli: &Cli,
    before: &Watermarks,
    after: &Watermarks,
    acked: &[Acked],
    verification: &mut Verification,
) -> Result<()> {
    let start: Offsets = after
        .iter()
        .map(|(&p, _)| (p, before.get(&p).map_or(0, |&(_, high)| high)))
        .collect();
    let end = OnceLock::new();
    let _ = end.set(after.iter().map(|(&p, &(_, high))| (p, high)).collect());
    let range = ReadRange {
        start: &start,
        end: &end,
        max_messages: None,
    };

    // Acknowledgements with an offset are checked by position, the others (acks=0) by presence.
    let mut by_position: HashMap<(i32, i64), u64> = HashMap::new();
    let mut by_seq: HashSet<u64> = HashSet::new();
    for record in acked {
        if record.offset >= 0 {
            by_position.insert((record.partition, record.offset), record.seq);
        } else {
            by_seq.insert(record.seq);
        }
    }
    let expected = acked.len() as u64;
    let mut intact = 0u64;
    let mut mismatches = Vec::new();
    let mut mismatched = 0u64;
    consume::read(cli, &range, None, |partition, offset, bytes| {
        if let Some(seq) = by_position.remove(&(partition, offset)) {
            if cli.payload.is_intact(bytes, seq, cli.message_size) {
                intact += 1;
            } else {
                mismatched += 1;
                if mismatches.len() < MAX_PROBLEMS {
                    mismatches.push(format!(
                        "partition {partition} offset {offset}: expected message {seq} \
                         ({} B), found message {:?} ({} B)",
                        cli.message_size,
                        cli.payload.seq(bytes),
                        bytes.len()
                    ));
                }
            }
        } else if let Some(seq) = cli.payload.seq(bytes) {
            if by_seq.remove(&seq) && cli.payload.is_intact(bytes, seq, cli.message_size) {
                intact += 1;
            }
        }
    })
    .context("reading the topic back")?;

    for problem in mismatches {
        verification.fail(problem);
    }
    let mut missing: Vec<_> = by_position.into_iter().collect();
    missing.sort_unstable();
    for ((partition, offset), seq) in missing.iter().take(MAX_PROBLEMS) {
        verification.fail(format!(
            "partition {partition} offset {offset}: acknowledged message {seq} not found"
        ));
    }
    if !by_seq.is_empty() {
        verification.fail(format!(
            "{} acknowledged messages without offsets not found",
            by_seq.len()
        ));
    }
    verification.readback = Some(Readback {
        expected,
        intact,
        mismatched,
        missing: (missing.len() + by_seq.len()) as u64,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::report::new_histogram;

    const PATIENCE: Duration = Duration::from_secs(30);
    const EARLY: Duration = Duration::from_secs(1);

    fn acks(entries: &[(i32, u64, i64)]) -> BTreeMap<i32, PartitionAcks> {
        entries
            .iter()
            .map(|&(partition, count, max_offset)| (partition, PartitionAcks { count, max_offset }))
            .collect()
    }

    fn marks(entries: &[(i32, i64, i64)]) -> Watermarks {
        entries
            .iter()
            .map(|&(partition, low, high)| (partition, (low, high)))
            .collect()
    }

    #[test]
    fn covered_acknowledgements_are_stored() {
        let acks = acks(&[(0, 100, 109), (1, 50, 49)]);
        let before = marks(&[(0, 0, 10), (1, 0, 0)]);
        let after = marks(&[(0, 0, 110), (1, 0, 50)]);
        assert_eq!(
            judge(&acks, &before, &after, Duration::ZERO, PATIENCE),
            Judgement::Stored
        );
    }

    #[test]
    fn partitions_without_acknowledgements_do_not_matter() {
        let acks = acks(&[(0, 10, 9)]);
        let before = marks(&[(0, 0, 0), (1, 0, 0)]);
        let after = marks(&[(0, 0, 10), (1, 0, 0)]);
        assert_eq!(
            judge(&acks, &before, &after, Duration::ZERO, PATIENCE),
            Judgement::Stored
        );
    }

    #[test]
    fn a_trailing_high_watermark_is_waited_for() {
        // acks=1 on RF=3: the leader acknowledged 1000 records, followers replicated 400.
        let acks = acks(&[(0, 1000, 999), (1, 10, 9)]);
        let before = marks(&[(0, 0, 0), (1, 0, 0)]);
        let after = marks(&[(0, 0, 400), (1, 0, 10)]);
        let Judgement::Waiting(shortfalls) = judge(&acks, &before, &after, EARLY, PATIENCE) else {
            panic!("expected to wait");
        };
        assert_eq!(shortfalls.len(), 1);
        assert_eq!(shortfalls[0].partition, 0);
        assert_eq!(shortfalls[0].missing, 600);
    }

    #[test]
    fn a_high_watermark_still_trailing_at_the_deadline_is_a_loss() {
        let acks = acks(&[(0, 1000, 999)]);
        let before = marks(&[(0, 0, 0)]);
        let after = marks(&[(0, 0, 400)]);
        let Judgement::Lost(shortfalls) = judge(&acks, &before, &after, PATIENCE, PATIENCE) else {
            panic!("expected a loss");
        };
        assert_eq!(missing_total(&shortfalls), 600);
        let text = shortfalls[0].to_string();
        assert!(text.contains("1000 acknowledged"), "{text}");
        assert!(text.contains("at least 600 missing"), "{text}");
    }

    #[test]
    fn an_acknowledged_offset_at_the_high_watermark_is_not_covered() {
        // The count is covered (another writer appended too) but offset 120 is not readable.
        let acks = acks(&[(0, 5, 120)]);
        let before = marks(&[(0, 0, 100)]);
        let after = marks(&[(0, 0, 120)]);
        let Judgement::Lost(shortfalls) = judge(&acks, &before, &after, PATIENCE, PATIENCE) else {
            panic!("expected a loss");
        };
        assert_eq!(shortfalls[0].missing, 1);
        assert!(matches!(
            judge(&acks, &before, &after, EARLY, PATIENCE),
            Judgement::Waiting(_)
        ));
    }

    #[test]
    fn removed_records_are_lost_without_waiting() {
        let acks = acks(&[(0, 100, 149), (1, 10, 9)]);
        let before = marks(&[(0, 0, 50), (1, 0, 0)]);
        // Partition 1 still trails, partition 0 lost its first 30 acknowledged records.
        let after = marks(&[(0, 80, 150), (1, 0, 5)]);
        let Judgement::Lost(shortfalls) = judge(&acks, &before, &after, EARLY, PATIENCE) else {
            panic!("expected a loss");
        };
        assert_eq!(shortfalls[0].partition, 0);
        assert_eq!(shortfalls[0].missing, 30);
        assert!(matches!(
            shortfalls[0].reason,
            ShortfallReason::Removed { low: 80, .. }
        ));
        assert_eq!(missing_total(&shortfalls), 35);
    }

    #[test]
    fn a_vanished_partition_is_lost_without_waiting() {
        let acks = acks(&[(0, 10, 9), (3, 7, 6)]);
        let before = marks(&[(0, 0, 0), (3, 0, 0)]);
        let after = marks(&[(0, 0, 10)]);
        let Judgement::Lost(shortfalls) = judge(&acks, &before, &after, EARLY, PATIENCE) else {
            panic!("expected a loss");
        };
        assert_eq!(shortfalls.len(), 1);
        assert_eq!(shortfalls[0].partition, 3);
        assert_eq!(shortfalls[0].missing, 7);
    }

    #[test]
    fn zero_patience_judges_the_first_observation() {
        let acks = acks(&[(0, 2, 1)]);
        let before = marks(&[(0, 0, 0)]);
        let after = marks(&[(0, 0, 1)]);
        assert!(matches!(
            judge(&acks, &before, &after, Duration::ZERO, Duration::ZERO),
            Judgement::Lost(_)
        ));
    }

    fn outcome(partitions: BTreeMap<i32, PartitionAcks>) -> ProduceOutcome {
        ProduceOutcome {
            acked: partitions.values().map(|a| a.count).sum(),
            acked_bytes: 0,
            errors: 0,
            error_samples: Vec::new(),
            elapsed: Duration::from_secs(1),
            latency: new_histogram(),
            slowest_sent_at: None,
            partitions,
            acked_records: Vec::new(),
        }
    }

    #[test]
    fn a_loss_fails_the_verification_naming_the_missing_count() {
        let cli = Cli::parse_from(["chronik-bench"]);
        let before = marks(&[(0, 0, 0)]);
        let after = marks(&[(0, 0, 400)]);
        let outcome = outcome(acks(&[(0, 1000, 999)]));
        let judgement = judge(&outcome.partitions, &before, &after, PATIENCE, PATIENCE);
        let observed = Observed {
            after,
            judgement,
            waited: PATIENCE,
        };
        let verification = check(&cli, &before, &outcome, observed).expect("checked");
        assert!(!verification.ok);
        assert_eq!(verification.stored, 400);
        let summary = verification.summary();
        assert!(summary.starts_with("FAILED"), "{summary}");
        assert!(
            summary.contains("at least 600 acknowledged records missing"),
            "{summary}"
        );
    }

    #[test]
    fn a_settled_observation_passes_and_reports_the_wait() {
        let cli = Cli::parse_from(["chronik-bench"]);
        let before = marks(&[(0, 0, 0)]);
        let after = marks(&[(0, 0, 1000)]);
        let outcome = outcome(acks(&[(0, 1000, 999)]));
        let judgement = judge(&outcome.partitions, &before, &after, EARLY, PATIENCE);
        let observed = Observed {
            after,
            judgement,
            waited: Duration::from_millis(1200),
        };
        let verification = check(&cli, &before, &outcome, observed).expect("checked");
        assert!(verification.ok, "{}", verification.summary());
        assert_eq!(verification.waited_ms, 1200);
        assert!(verification.summary().contains("settled after 1200 ms"));
    }
}
