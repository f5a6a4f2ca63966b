//! Topic set-up and inspection: create with the AdminClient, list partitions, read watermarks.

use std::collections::BTreeMap;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::metadata::MetadataTopic;
use rdkafka::types::RDKafkaErrorCode;

use crate::Cli;

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Low and high watermark of each partition, by partition id.
pub type Watermarks = BTreeMap<i32, (i64, i64)>;

/// Creates the topic with `--partitions` partitions unless it exists, then waits until its
/// metadata shows every partition with a leader.
pub fn ensure(cli: &Cli) -> Result<()> {
    if partitions(cli).is_ok() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = cli
        .base_config()
        .create()
        .context("creating admin client")?;
    let configs = cli.topic_configs()?;
    let mut topic = NewTopic::new(
        &cli.topic,
        cli.partitions,
        TopicReplication::Fixed(cli.replication_factor),
    );
    for (key, value) in &configs {
        topic = topic.set(key, value);
    }
    let options = AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT));
    let results = futures::executor::block_on(admin.create_topics([&topic], &options))
        .context("CreateTopics request")?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("creating topic {name}: {code}"),
        }
    }
    let deadline = Instant::now() + METADATA_TIMEOUT;
    loop {
        match partitions(cli) {
            Ok(found) if found.len() >= usize::try_from(cli.partitions).unwrap_or(0) => {
                return Ok(())
            }
            Ok(_) | Err(_) if Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(100))
            }
            Ok(found) => bail!(
                "topic {} has {} partitions after creation, expected {}",
                cli.topic,
                found.len(),
                cli.partitions
            ),
            Err(error) => return Err(error.context("topic not visible after creation")),
        }
    }
}

/// The topic's partition ids, from a metadata request; an error when the topic is unknown or
/// some partition has no leader.
pub fn partitions(cli: &Cli) -> Result<Vec<i32>> {
    with_topic_metadata(cli, |topic| {
        if topic.partitions().is_empty() {
            bail!("topic {} has no partitions", cli.topic);
        }
        let mut ids = Vec::with_capacity(topic.partitions().len());
        for partition in topic.partitions() {
            if partition.leader() < 0 {
                bail!(
                    "topic {} partition {} has no leader",
                    cli.topic,
                    partition.id()
                );
            }
            ids.push(partition.id());
        }
        ids.sort_unstable();
        Ok(ids)
    })
}

/// Runs `read` over the topic's entry of a fresh metadata answer; an error when the topic is
/// missing or reported with an error code.
fn with_topic_metadata<T>(cli: &Cli, read: impl FnOnce(&MetadataTopic) -> Result<T>) -> Result<T> {
    let consumer: BaseConsumer = cli.base_config().create().context("creating client")?;
    let metadata = consumer
        .fetch_metadata(Some(&cli.topic), METADATA_TIMEOUT)
        .context("metadata request")?;
    let topic = metadata
        .topics()
        .iter()
        .find(|t| t.name() == cli.topic)
        .ok_or_else(|| anyhow!("topic {} missing from metadata", cli.topic))?;
    if let Some(error) = topic.error() {
        bail!("topic {}: {:?}", cli.topic, RDKafkaErrorCode::from(error));
    }
    read(topic)
}

/// Low and high watermarks of every partition of the topic.
pub fn watermarks(cli: &Cli) -> Result<Watermarks> {
    let consumer: BaseConsumer = cli.base_config().create().context("creating client")?;
    let mut marks = Watermarks::new();
    for partition in partitions(cli)? {
        let pair = consumer
            .fetch_watermarks(&cli.topic, partition, METADATA_TIMEOUT)
            .with_context(|| format!("watermarks of {}/{partition}", cli.topic))?;
        marks.insert(partition, pair);
    }
    Ok(marks)
}

/// Where one partition lives: its leader (-1 when none) and how many replicas and in-sync
/// replicas it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub leader: i32,
    pub replicas: usize,
    pub isr: usize,
}

impl Placement {
    /// Led, and every replica in sync.
    pub fn healthy(&self) -> bool {
        self.leader >= 0 && self.isr == self.replicas
    }
}

/// Leader, replicas and ISR of every partition of the topic, as the broker asked reports them.
pub fn placement(cli: &Cli) -> Result<BTreeMap<i32, Placement>> {
    with_topic_metadata(cli, |topic| {
        Ok(topic
            .partitions()
            .iter()
            .map(|p| {
                (
                    p.id(),
                    Placement {
                        leader: p.leader(),
                        replicas: p.replicas().len(),
                        isr: p.isr().len(),
                    },
                )
            })
            .collect())
    })
}
