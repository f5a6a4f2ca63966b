//! The runtime around KIP-848 consumer groups ([`consumer_group`]): heartbeats under the
//! coordinator's lock with a snapshot of the topics, descriptions, and session timers.
//!
//! A group id is either a classic group (JoinGroup/SyncGroup) or a consumer group, never both
//! at once while it has members; offsets of both kinds live in the classic
//! [`super::group::Group`] entry, so OffsetFetch, OffsetDelete, retention and
//! `__consumer_offsets` work the same for either.
//! Every change of a group's epochs, membership or assignments is written to
//! `__consumer_offsets` (one record per group, [`consumer_group::records`]) and durable before
//! the heartbeat that caused it is answered, so after a restart or a coordinator move members
//! carry on with the epochs and partitions they were told about.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;

use super::consumer_group::{
    ConsumerGroup, ConsumerGroupState, ConsumerMember, Heartbeat, HeartbeatAnswer, Refusal,
    TopicCatalog, TopicPartitions, TopicShape,
};
use super::group::GroupState;
use super::records::Key;
use super::{consumer_group, now_ms, Appended, Coordinator, CoordinatorError, Inner};
use crate::error_codes;

/// What ConsumerGroupDescribe reports about one group.
pub struct ConsumerGroupDescription {
    pub state: ConsumerGroupState,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: &'static str,
    /// Each member with its target assignment.
    pub members: Vec<(ConsumerMember, TopicPartitions)>,
    /// Topic id → name, for the members' assignments.
    pub topic_names: Vec<(uuid::Uuid, String)>,
}

impl Coordinator {
    /// The topics a consumer group can subscribe to, from the current metadata.
    fn topic_catalog(&self) -> TopicCatalog {
        self.meta
            .state()
            .topics
            .values()
            .filter(|t| !t.name.starts_with("__"))
            .map(|t| {
                let shape = TopicShape {
                    id: t.id,
                    partitions: t.partitions.len() as i32,
                };
                (t.name.clone(), shape)
            })
            .collect()
    }

    pub async fn consumer_heartbeat(
        self: &Arc<Self>,
        group_id: &str,
        heartbeat: Heartbeat,
    ) -> Result<HeartbeatAnswer, Refusal> {
        let unexplained = |e: ResponseError| (e, String::new());
        self.ready().await.map_err(unexplained)?;
        self.check_owner(group_id).map_err(unexplained)?;
        let topics = self.topic_catalog();
        // The lock is released before waiting for durability (a block, so the future stays Send).
        let (answer, stored) = {
            let mut inner = self.inner.lock();
            if inner.has_classic_members(group_id) {
                return Err((
                    ResponseError::GroupIdNotFound,
                    format!("Group {group_id} is not a consumer group."),
                ));
            }
            let config = self.config.consumer.clone();
            let group = inner
                .consumer_groups
                .entry(group_id.to_string())
                .or_insert_with(|| ConsumerGroup::new(group_id, config));
            let epoch = group.group_epoch();
            let answer = match group.heartbeat(heartbeat, &topics, now_ms()) {
                Ok(answer) => answer,
                Err(refusal) => {
                    // A first heartbeat that was refused leaves no group behind.
                    if group.is_empty() && group.group_epoch() == 0 {
                        inner.consumer_groups.remove(group_id);
                    }
                    return Err(refusal);
                }
            };
            if group.group_epoch() != epoch {
                tracing::info!(
                    group = group_id,
                    epoch = group.group_epoch(),
                    members = group.members().count(),
                    "consumer group epoch bumped"
                );
            }
            (answer, self.store_consumer_group(group))
        };
        if let Some(stored) = stored {
            let durable = match stored {
                Ok((log, last)) => log.wait_durable(last).await.map_err(CoordinatorError::from),
                Err(e) => Err(e),
            };
            if let Err(e) = durable {
                tracing::warn!(group = group_id, error = %e, "consumer group state not stored");
                return Err((error_codes::for_coordinator(&e), e.to_string()));
            }
        }
        Ok(answer)
    }

    /// Append the group's record if it changed (in the caller's lock, so records are in the
    /// order of the changes). Returns what to wait on for durability.
    fn store_consumer_group(
        &self,
        group: &mut ConsumerGroup,
    ) -> Option<Result<Appended, CoordinatorError>> {
        if !group.take_dirty() {
            return None;
        }
        let key = Key::ConsumerGroup {
            group: group.id.clone(),
        };
        let value = consumer_group::records::encode(group);
        Some(self.append(&group.id, &[(key.encode(), Some(value))]))
    }

    pub async fn describe_consumer_group(
        self: &Arc<Self>,
        group_id: &str,
    ) -> Result<ConsumerGroupDescription, (ResponseError, String)> {
        let unexplained = |e: ResponseError| (e, String::new());
        self.ready().await.map_err(unexplained)?;
        self.check_owner(group_id).map_err(unexplained)?;
        let inner = self.inner.lock();
        let Some(group) = inner.consumer_groups.get(group_id) else {
            let message = if inner.groups.contains_key(group_id) {
                format!("Group {group_id} is not a consumer group.")
            } else {
                format!("Group {group_id} not found.")
            };
            return Err((ResponseError::GroupIdNotFound, message));
        };
        let topic_names = self
            .meta
            .state()
            .topics
            .values()
            .map(|t| (t.id, t.name.clone()))
            .collect();
        Ok(ConsumerGroupDescription {
            state: group.state(),
            group_epoch: group.group_epoch(),
            assignment_epoch: group.assignment_epoch(),
            assignor: group.assignor().name(),
            members: group
                .members()
                .map(|m| (m.clone(), group.target_of(&m.id)))
                .collect(),
            topic_names,
        })
    }

    /// Session and revocation timeouts of consumer groups.
    pub(super) fn tick_consumer_groups(&self, inner: &mut Inner, now: i64) {
        for group in inner.consumer_groups.values_mut() {
            for member in group.tick(now) {
                tracing::info!(group = %group.id, member = %member, epoch = group.group_epoch(), "consumer group member expired");
            }
            // Nobody waits on an expiry; a lost record only means the member is expired again
            // after a restart.
            if let Some(Err(e)) = self.store_consumer_group(group) {
                tracing::warn!(group = %group.id, error = %e, "cannot store consumer group expiry");
            }
        }
    }
}

impl Inner {
    /// A classic group with members holds the id; a consumer group cannot take it over.
    pub(super) fn has_classic_members(&self, group_id: &str) -> bool {
        self.groups
            .get(group_id)
            .is_some_and(|g| !matches!(g.state(), GroupState::Empty | GroupState::Dead))
    }

    /// The consumer group of `group_id` if it has members.
    pub(super) fn active_consumer_group(&self, group_id: &str) -> Option<&ConsumerGroup> {
        self.consumer_groups.get(group_id).filter(|g| !g.is_empty())
    }
}
