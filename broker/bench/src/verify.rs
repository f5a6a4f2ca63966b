//! After a produce run: is what the broker acknowledged really stored?
//!
//! Two checks. The watermark check compares, per partition, the acknowledgements with how far
//! the high watermark advanced during the run, and checks that every acknowledged offset lies
//! between the low and high watermarks. The optional read-back (`--verify-readback`) consumes
//! the range the run appended and checks every acknowledged (partition, offset) holds the
//! payload that was sent, byte for byte.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::consume::{self, Offsets, ReadRange};
use crate::produce::{Acked, ProduceOutcome};
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
        let mut text = if self.ok {
            format!(
                "OK: acknowledged {}, stored {} (watermarks)",
                self.acknowledged, self.stored
            )
        } else {
            format!(
                "FAILED: acknowledged {}, stored {} (watermarks)",
                self.acknowledged, self.stored
            )
        };
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
    let after = topic::watermarks(cli).context("reading watermarks after the run")?;
    let mut verification = Verification {
        ok: true,
        acknowledged: outcome.acked,
        stored: 0,
        readback: None,
        problems: Vec::new(),
    };
    check_watermarks(before, &after, outcome, &mut verification);
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

fn check_watermarks(
    before: &Watermarks,
    after: &Watermarks,
    outcome: &ProduceOutcome,
    verification: &mut Verification,
) {
    for (&partition, &(low, high)) in after {
        let high_before = before.get(&partition).map_or(0, |&(_, high)| high);
        let appended = high - high_before;
        verification.stored += appended;
        let Some(acks) = outcome.partitions.get(&partition) else {
            continue;
        };
        if i64::try_from(acks.count).unwrap_or(i64::MAX) > appended {
            verification.fail(format!(
                "partition {partition}: {} acknowledged but the high watermark advanced by only \
                 {appended} ({high_before} -> {high})",
                acks.count
            ));
        }
        if acks.max_offset >= high {
            verification.fail(format!(
                "partition {partition}: offset {} acknowledged but the high watermark is {high}",
                acks.max_offset
            ));
        }
        if acks.max_offset >= 0 && low > high_before {
            verification.fail(format!(
                "partition {partition}: low watermark {low} passed the run's first offset \
                 {high_before}: acknowledged records were removed"
            ));
        }
    }
    for partition in outcome.partitions.keys() {
        if !after.contains_key(partition) {
            verification.fail(format!(
                "partition {partition}: acknowledged writes but the partition is gone"
            ));
        }
    }
    if i64::try_from(outcome.acked).unwrap_or(i64::MAX) > verification.stored {
        verification.fail(format!(
            "{} messages acknowledged but only {} stored",
            outcome.acked, verification.stored
        ));
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
