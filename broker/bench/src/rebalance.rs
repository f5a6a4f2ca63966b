//! `--mode rebalance`: how long a consumer group takes to hand out every partition. `--consumers`
//! members subscribe at once to the topic; the time from the subscriptions until every member
//! holds partitions and together they hold each partition exactly once is the join time. Then
//! one member closes (LeaveGroup) and the time until the rest hold every partition again is the
//! leave time. The broker's group.initial.rebalance.delay.ms applies to the first (a new group
//! waits for more members), not to the second.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::Serialize;

use crate::report::Report;
use crate::{topic, Cli};

/// Rebalance times of one run.
#[derive(Debug, Clone, Serialize)]
pub struct RebalanceSummary {
    pub members: usize,
    pub partitions: usize,
    /// Subscribe to every partition assigned exactly once over all members.
    pub join_ms: f64,
    /// One member's close to the others holding every partition again.
    pub leave_ms: f64,
}

impl RebalanceSummary {
    pub fn line(&self) -> String {
        format!(
            "join {:.0}, leave {:.0} ({} members, {} partitions; join includes the broker's \
             group.initial.rebalance.delay.ms)",
            self.join_ms, self.leave_ms, self.members, self.partitions
        )
    }
}

pub fn run(cli: &Cli) -> Result<Report> {
    if cli.consumers < 2 {
        bail!("--mode rebalance needs --consumers of at least 2");
    }
    topic::ensure(cli).context("preparing topic")?;
    let partitions = topic::watermarks(cli)
        .context("reading the topic's partitions")?
        .len();
    if cli.consumers > partitions {
        bail!(
            "--consumers {} is more than the topic's {partitions} partitions",
            cli.consumers
        );
    }
    let timeout = Duration::from_secs(cli.stall_timeout);
    let group = format!("chronik-bench-rebalance-{}", std::process::id());

    let mut config = cli.consumer_config()?;
    config.set("group.id", &group);
    let mut members = Vec::with_capacity(cli.consumers);
    for _ in 0..cli.consumers {
        let consumer: BaseConsumer = config.create().context("creating consumer")?;
        members.push(consumer);
    }
    let started = Instant::now();
    for consumer in &members {
        consumer
            .subscribe(&[cli.topic.as_str()])
            .context("subscribing")?;
    }
    let join = settle(&members, &cli.topic, partitions, started, timeout)
        .context("waiting for every member to be assigned")?;

    let leaving = members.pop().expect("at least two members");
    let left_at = Instant::now();
    // close() runs the member's final revoke and sends LeaveGroup.
    drop(leaving);
    let leave = settle(&members, &cli.topic, partitions, left_at, timeout)
        .context("waiting for the remaining members to take over")?;

    let mut report = Report::new(cli, 0, 0, started.elapsed());
    report.rebalance = Some(RebalanceSummary {
        members: cli.consumers,
        partitions,
        join_ms: join.as_secs_f64() * 1000.0,
        leave_ms: leave.as_secs_f64() * 1000.0,
    });
    Ok(report)
}

/// Poll every member until each holds partitions of `topic` and together they hold each of the
/// `partitions` exactly once; the time since `since`.
fn settle(
    members: &[BaseConsumer],
    topic: &str,
    partitions: usize,
    since: Instant,
    timeout: Duration,
) -> Result<Duration> {
    loop {
        for consumer in members {
            if let Some(Err(e)) = consumer.poll(Duration::from_millis(5)) {
                bail!("consumer error: {e}");
            }
        }
        let held: Vec<Vec<i32>> = members
            .iter()
            .map(|c| {
                c.assignment()
                    .map(|list| {
                        list.elements()
                            .iter()
                            .filter(|e| e.topic() == topic)
                            .map(|e| e.partition())
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect();
        if covers_once(&held, partitions) {
            return Ok(since.elapsed());
        }
        if since.elapsed() > timeout {
            bail!("after {timeout:?} the members hold {held:?} of {partitions} partitions");
        }
    }
}

/// Every member holds something and the members together hold partitions `0..partitions`,
/// each exactly once.
fn covers_once(held: &[Vec<i32>], partitions: usize) -> bool {
    let mut all = held.concat();
    all.sort_unstable();
    held.iter().all(|m| !m.is_empty()) && all.into_iter().eq(0..partitions as i32)
}

#[cfg(test)]
mod tests {
    use super::covers_once;

    #[test]
    fn every_partition_once_and_every_member_busy() {
        assert!(covers_once(&[vec![0, 1], vec![2, 3]], 4));
        assert!(
            !covers_once(&[vec![0, 1, 2, 3], vec![]], 4),
            "an idle member"
        );
        assert!(!covers_once(&[vec![0, 1], vec![1, 2, 3]], 4), "held twice");
        assert!(
            !covers_once(&[vec![0, 1], vec![3]], 4),
            "partition 2 unheld"
        );
        assert!(!covers_once(&[vec![1, 2], vec![3, 4]], 4), "not 0..4");
    }
}
