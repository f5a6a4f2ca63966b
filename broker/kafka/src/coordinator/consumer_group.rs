//! One KIP-848 consumer group (the "consumer" rebalance protocol) as a pure state machine: no
//! I/O, no clock; the runtime passes `now` and a snapshot of the topics.
//!
//! The broker computes the assignment. Any change of membership, of a subscription or of a
//! subscribed topic's partitions bumps the group epoch, and the group's server-side assignor
//! ([`super::consumer_assignor`]) computes the target assignment of that epoch. Each member then
//! converges to its target through its own heartbeats, as in Kafka's `CurrentAssignmentBuilder`:
//! partitions it must give up are revoked first (its epoch stays), and a partition is handed to
//! its new owner only once the previous owner's heartbeat no longer lists it. No partition is
//! ever owned by two members at once, and members that keep their partitions never stop.
//!
//! Errors are Kafka codes because choosing them is the protocol's job, as in [`super::group`].

pub(crate) mod records;

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::error::ResponseError;
use uuid::Uuid;

pub use super::consumer_assignor::{AssignorKind, TopicPartitions, TopicShape};

/// Member epoch of a heartbeat that joins the group.
pub const JOIN_EPOCH: i32 = 0;
/// Member epoch of a heartbeat that leaves the group.
pub const LEAVE_EPOCH: i32 = -1;
/// Member epoch of a static member leaving for a while (a restart): it keeps its assignment.
pub const STATIC_LEAVE_EPOCH: i32 = -2;

/// Broker settings of consumer groups (Kafka's group.consumer.* configs).
#[derive(Debug, Clone)]
pub struct ConsumerGroupConfig {
    /// group.consumer.session.timeout.ms: a member silent this long is removed.
    pub session_timeout_ms: i64,
    /// group.consumer.heartbeat.interval.ms: what members are told to heartbeat at.
    pub heartbeat_interval_ms: i32,
}

impl Default for ConsumerGroupConfig {
    fn default() -> Self {
        ConsumerGroupConfig {
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
        }
    }
}

/// Where a member is on its way to its target assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// Holds its target assignment of the member epoch.
    Stable,
    /// Was asked to give up partitions and has not confirmed yet.
    UnrevokedPartitions,
    /// Waits for partitions other members still hold.
    UnreleasedPartitions,
}

/// A group's state as DescribeGroups, ListGroups and ConsumerGroupDescribe name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerGroupState {
    Empty,
    Assigning,
    Reconciling,
    Stable,
}

impl ConsumerGroupState {
    pub fn name(self) -> &'static str {
        match self {
            ConsumerGroupState::Empty => "Empty",
            ConsumerGroupState::Assigning => "Assigning",
            ConsumerGroupState::Reconciling => "Reconciling",
            ConsumerGroupState::Stable => "Stable",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ConsumerMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: BTreeSet<String>,
    pub subscribed_topic_regex: Option<String>,
    /// `subscribed_topic_regex` compiled to match whole topic names, as Kafka does.
    regex_matcher: Option<regex::Regex>,
    pub server_assignor: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub member_epoch: i32,
    previous_member_epoch: i32,
    pub state: MemberState,
    /// What the member owns and may consume.
    pub assigned: TopicPartitions,
    /// What it was asked to give up and may still be consuming.
    revoking: TopicPartitions,
    last_heartbeat: i64,
    /// When a member that was asked to revoke must have done so, or be removed.
    revocation_deadline: Option<i64>,
    /// A static member that left with epoch -2: it keeps its partitions until it comes back
    /// under a new member id or its session runs out.
    left_temporarily: bool,
    /// When the member was last sent an assignment it has not yet confirmed by reporting
    /// exactly those partitions as owned (not persisted: a reloaded group starts without).
    unconfirmed_since: Option<i64>,
}

/// A ConsumerGroupHeartbeat, decoded by the handler. `None` fields are "unchanged".
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    /// -1 when unchanged.
    pub rebalance_timeout_ms: i32,
    pub subscribed_topic_names: Option<Vec<String>>,
    /// `Some("")` clears the regex.
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    /// Partitions the member owns, reported when they changed.
    pub owned: Option<TopicPartitions>,
    pub client_id: String,
    pub client_host: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatAnswer {
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// Sent when it changed or the member sent a full request.
    pub assignment: Option<TopicPartitions>,
}

/// A refused heartbeat: the code and a message for the client's log.
pub type Refusal = (ResponseError, String);

/// The topics that exist (not internal ones), by name.
pub type TopicCatalog = BTreeMap<String, TopicShape>;

#[derive(Debug, Clone)]
pub struct ConsumerGroup {
    pub id: String,
    config: ConsumerGroupConfig,
    group_epoch: i32,
    assignment_epoch: i32,
    members: BTreeMap<String, ConsumerMember>,
    /// group.instance.id → member id.
    static_members: BTreeMap<String, String>,
    target: BTreeMap<String, TopicPartitions>,
    /// The subscribed topics as of the last epoch bump; a difference means a new epoch.
    subscribed_topics: BTreeMap<String, TopicShape>,
    /// Each owned partition's owner (assigned or still revoking).
    owners: BTreeMap<(Uuid, i32), String>,
    assignor: AssignorKind,
    /// Something persisted changed since the runtime last stored the group.
    dirty: bool,
}

impl ConsumerGroup {
    pub fn new(id: &str, config: ConsumerGroupConfig) -> ConsumerGroup {
        ConsumerGroup {
            id: id.to_string(),
            config,
            group_epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            target: BTreeMap::new(),
            subscribed_topics: BTreeMap::new(),
            owners: BTreeMap::new(),
            assignor: AssignorKind::ALL[0],
            dirty: false,
        }
    }

    /// Whether the group must be stored again before the answer goes out. Reading clears it.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    pub fn group_epoch(&self) -> i32 {
        self.group_epoch
    }
    pub fn assignment_epoch(&self) -> i32 {
        self.assignment_epoch
    }
    pub fn assignor(&self) -> AssignorKind {
        self.assignor
    }
    pub fn members(&self) -> impl Iterator<Item = &ConsumerMember> {
        self.members.values()
    }
    #[cfg(test)]
    pub fn member(&self, id: &str) -> Option<&ConsumerMember> {
        self.members.get(id)
    }
    pub fn target_of(&self, member: &str) -> TopicPartitions {
        self.target.get(member).cloned().unwrap_or_default()
    }
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn state(&self) -> ConsumerGroupState {
        if self.members.is_empty() {
            ConsumerGroupState::Empty
        } else if self.group_epoch > self.assignment_epoch {
            ConsumerGroupState::Assigning
        } else if self
            .members
            .values()
            .any(|m| m.member_epoch != self.assignment_epoch || m.state != MemberState::Stable)
        {
            ConsumerGroupState::Reconciling
        } else {
            ConsumerGroupState::Stable
        }
    }

    /// Whether any member subscribes to `topic` (OffsetDelete refuses those).
    pub fn is_subscribed_to(&self, topic: &str) -> bool {
        self.subscribed_topics.contains_key(topic)
    }

    /// OffsetCommit from a member: it must exist and commit with its current epoch, or the
    /// one just before it (the commit was sent while the heartbeat that moved the member on was
    /// in flight; the member still owned what it commits, and a fenced member is not a member
    /// any more). librdkafka does not retry a manual commit refused as stale.
    pub fn check_commit(&self, member_id: &str, member_epoch: i32) -> Result<(), ResponseError> {
        let member = self
            .members
            .get(member_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        if member_epoch != member.member_epoch && member_epoch != member.previous_member_epoch {
            return Err(ResponseError::StaleMemberEpoch);
        }
        Ok(())
    }

    pub fn heartbeat(
        &mut self,
        hb: Heartbeat,
        topics: &TopicCatalog,
        now: i64,
    ) -> Result<HeartbeatAnswer, Refusal> {
        self.validate(&hb)?;
        if hb.member_epoch == LEAVE_EPOCH || hb.member_epoch == STATIC_LEAVE_EPOCH {
            return self.leave(&hb, now);
        }
        let full_request = hb.member_epoch == JOIN_EPOCH
            || (hb.rebalance_timeout_ms != -1
                && hb.subscribed_topic_names.is_some()
                && hb.owned.is_some());
        let (mut member, mut changed) = self.take_member(&hb)?;
        let before = member.assigned.clone();
        let progress = (member.member_epoch, member.state, member.revoking.clone());
        if let Some(names) = &hb.subscribed_topic_names {
            let names: BTreeSet<String> = names.iter().cloned().collect();
            changed |= names != member.subscribed_topic_names;
            member.subscribed_topic_names = names;
        }
        if let Some(regex) = &hb.subscribed_topic_regex {
            let regex = (!regex.is_empty()).then(|| regex.clone());
            if regex != member.subscribed_topic_regex {
                changed = true;
                member.regex_matcher = regex.as_deref().and_then(whole_name_matcher);
                member.subscribed_topic_regex = regex;
            }
        }
        if hb.server_assignor.is_some() && hb.server_assignor != member.server_assignor {
            member.server_assignor = hb.server_assignor.clone();
            changed = true;
        }
        if hb.rack_id != member.rack_id && hb.rack_id.is_some() {
            member.rack_id = hb.rack_id.clone();
            changed = true;
        }
        if hb.rebalance_timeout_ms >= 0 {
            member.rebalance_timeout_ms = hb.rebalance_timeout_ms;
        }
        member.client_id = hb.client_id.clone();
        member.client_host = hb.client_host.clone();
        member.last_heartbeat = now;
        let id = member.id.clone();
        if let Some(instance) = &member.instance_id {
            self.static_members.insert(instance.clone(), id.clone());
        }
        self.members.insert(id.clone(), member);

        let subscribed = self.resolve_subscribed_topics(topics);
        if changed || subscribed != self.subscribed_topics {
            self.subscribed_topics = subscribed;
            self.group_epoch += 1;
            self.dirty = true;
        }
        if self.group_epoch > self.assignment_epoch {
            self.compute_target(topics);
        }
        self.reconcile(&id, hb.owned.as_ref(), now);
        let assignment =
            self.assignment_to_send(&id, hb.owned.as_ref(), full_request, &before, now);
        let member = &self.members[&id];
        if member.assigned != before
            || (member.member_epoch, member.state, member.revoking.clone()) != progress
        {
            self.dirty = true;
        }
        Ok(HeartbeatAnswer {
            member_id: id.clone(),
            member_epoch: member.member_epoch,
            heartbeat_interval_ms: self.interval_for(member),
            assignment,
        })
    }

    /// The assignment a heartbeat's answer carries, if any. Kafka sends one only when it changed
    /// or the member sent a full request. A client whose request timed out has lost the answer
    /// that carried it, and librdkafka sends no full request after a timeout, so an assignment
    /// is also sent again while the member has not confirmed it (by reporting exactly those
    /// partitions as owned) for two heartbeat intervals: otherwise it would wait forever for
    /// partitions the group believes it holds.
    fn assignment_to_send(
        &mut self,
        member_id: &str,
        owned: Option<&TopicPartitions>,
        full_request: bool,
        before: &TopicPartitions,
        now: i64,
    ) -> Option<TopicPartitions> {
        let resend_after = 2 * i64::from(self.config.heartbeat_interval_ms);
        let member = self.members.get_mut(member_id)?;
        let confirmed =
            owned.is_some_and(|o| is_subset(o, &member.assigned) && is_subset(&member.assigned, o));
        if confirmed {
            member.unconfirmed_since = None;
        }
        let unconfirmed = member
            .unconfirmed_since
            .is_some_and(|sent| now - sent >= resend_after);
        if !(full_request || member.assigned != *before || unconfirmed) {
            return None;
        }
        if !confirmed {
            member.unconfirmed_since = Some(now);
        }
        Some(member.assigned.clone())
    }

    /// The configured interval, or a tenth of it (at least 100 ms) while the member is still
    /// on its way to its target: it is waiting for partitions another member is releasing, or
    /// has been asked to revoke, and each step of that hand-over otherwise costs a full
    /// interval. Clients take the interval from every response, so a stable member goes back
    /// to the configured one on its next heartbeat.
    fn interval_for(&self, member: &ConsumerMember) -> i32 {
        let configured = self.config.heartbeat_interval_ms;
        if member.state == MemberState::Stable && member.member_epoch == self.assignment_epoch {
            configured
        } else {
            (configured / 10).max(100).min(configured)
        }
    }

    fn validate(&self, hb: &Heartbeat) -> Result<(), Refusal> {
        let invalid = |m: &str| Err((ResponseError::InvalidRequest, m.to_string()));
        if hb.member_id.is_empty() {
            return invalid("MemberId can't be empty.");
        }
        if hb.instance_id.as_deref() == Some("") {
            return invalid("InstanceId can't be empty.");
        }
        if hb.rack_id.as_deref() == Some("") {
            return invalid("RackId can't be empty.");
        }
        match hb.member_epoch {
            JOIN_EPOCH => {
                if hb.rebalance_timeout_ms == -1 {
                    return invalid("RebalanceTimeoutMs must be provided in first request.");
                }
                if hb.owned.as_ref().is_none_or(|o| !o.is_empty()) {
                    return invalid("TopicPartitions must be empty when (re-)joining.");
                }
                let has_names = hb
                    .subscribed_topic_names
                    .as_ref()
                    .is_some_and(|n| !n.is_empty());
                let has_regex = hb
                    .subscribed_topic_regex
                    .as_ref()
                    .is_some_and(|r| !r.is_empty());
                if !has_names && !has_regex {
                    return invalid(
                        "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
                    );
                }
            }
            STATIC_LEAVE_EPOCH if hb.instance_id.is_none() => {
                return invalid("InstanceId can't be null when leaving with epoch -2.");
            }
            e if e < STATIC_LEAVE_EPOCH => return invalid("MemberEpoch is invalid."),
            _ => {}
        }
        if let Some(regex) = hb
            .subscribed_topic_regex
            .as_deref()
            .filter(|r| !r.is_empty())
        {
            if let Err(e) = regex::Regex::new(regex) {
                return Err((
                    ResponseError::InvalidRegularExpression,
                    format!(
                        "SubscribedTopicRegex `{regex}` is not a valid regular expression: {e}"
                    ),
                ));
            }
        }
        if let Some(name) = &hb.server_assignor {
            if AssignorKind::parse(name).is_none() {
                return Err((
                    ResponseError::UnsupportedAssignor,
                    format!("ServerAssignor {name} is not supported. Supported assignors: uniform, range."),
                ));
            }
        }
        Ok(())
    }

    /// The member the heartbeat is for, taken out of the map, and whether it is new to the
    /// group (which is a change of membership).
    fn take_member(&mut self, hb: &Heartbeat) -> Result<(ConsumerMember, bool), Refusal> {
        if hb.member_epoch != JOIN_EPOCH {
            let Some(member) = self.members.get(&hb.member_id) else {
                return Err((
                    ResponseError::UnknownMemberId,
                    format!(
                        "Member {} is not a member of group {}.",
                        hb.member_id, self.id
                    ),
                ));
            };
            if hb.instance_id.is_some() && member.instance_id != hb.instance_id {
                return Err((
                    ResponseError::FencedInstanceId,
                    format!("Member {} does not hold that instance id.", hb.member_id),
                ));
            }
            let epoch_ok = hb.member_epoch == member.member_epoch
                // The answer that bumped its epoch may have been lost: it comes back with the
                // previous epoch and owns only what it was given.
                || (hb.member_epoch == member.previous_member_epoch
                    && hb.member_epoch < member.member_epoch
                    && hb.owned.as_ref().is_some_and(|o| is_subset(o, &member.assigned)));
            if !epoch_ok {
                return Err((
                    ResponseError::FencedMemberEpoch,
                    format!(
                        "The member epoch {} is fenced; the current epoch is {}.",
                        hb.member_epoch, member.member_epoch
                    ),
                ));
            }
            let member = self.members.remove(&hb.member_id).map(|m| (m, false));
            return member.ok_or((ResponseError::UnknownMemberId, String::new()));
        }
        if let Some(instance) = &hb.instance_id {
            if let Some(holder) = self.static_members.get(instance).cloned() {
                if holder != hb.member_id {
                    let left = self
                        .members
                        .get(&holder)
                        .is_some_and(|m| m.left_temporarily);
                    if !left && self.members.contains_key(&holder) {
                        return Err((
                            ResponseError::UnreleasedInstanceId,
                            format!("Static member {instance} is still held by member {holder}."),
                        ));
                    }
                    // A static member back from a restart takes over its partitions and epoch
                    // under its new member id, without a rebalance.
                    if let Some(mut member) = self.members.remove(&holder) {
                        member.id = hb.member_id.clone();
                        member.left_temporarily = false;
                        for owner in self.owners.values_mut().filter(|o| **o == holder) {
                            owner.clone_from(&hb.member_id);
                        }
                        if let Some(target) = self.target.remove(&holder) {
                            self.target.insert(hb.member_id.clone(), target);
                        }
                        self.dirty = true;
                        return Ok((member, false));
                    }
                }
            }
        }
        if let Some(member) = self.members.remove(&hb.member_id) {
            return Ok((member, false));
        }
        Ok((
            ConsumerMember {
                id: hb.member_id.clone(),
                instance_id: hb.instance_id.clone(),
                rack_id: None,
                client_id: String::new(),
                client_host: String::new(),
                subscribed_topic_names: BTreeSet::new(),
                subscribed_topic_regex: None,
                regex_matcher: None,
                server_assignor: None,
                rebalance_timeout_ms: hb.rebalance_timeout_ms,
                member_epoch: 0,
                previous_member_epoch: 0,
                state: MemberState::Stable,
                assigned: TopicPartitions::new(),
                revoking: TopicPartitions::new(),
                last_heartbeat: 0,
                revocation_deadline: None,
                left_temporarily: false,
                unconfirmed_since: None,
            },
            true,
        ))
    }

    fn leave(&mut self, hb: &Heartbeat, now: i64) -> Result<HeartbeatAnswer, Refusal> {
        let member_id = match &hb.instance_id {
            Some(instance) => match self.static_members.get(instance) {
                Some(id) if *id == hb.member_id => id.clone(),
                Some(_) => {
                    return Err((
                        ResponseError::FencedInstanceId,
                        format!(
                            "Member {} does not hold instance id {instance}.",
                            hb.member_id
                        ),
                    ))
                }
                None => hb.member_id.clone(),
            },
            None => hb.member_id.clone(),
        };
        let Some(member) = self.members.get_mut(&member_id) else {
            return Err((
                ResponseError::UnknownMemberId,
                format!("Member {member_id} is not a member of group {}.", self.id),
            ));
        };
        if hb.member_epoch == STATIC_LEAVE_EPOCH {
            member.left_temporarily = true;
            member.last_heartbeat = now;
            self.dirty = true;
        } else {
            self.remove_member(&member_id);
        }
        Ok(HeartbeatAnswer {
            member_id,
            member_epoch: hb.member_epoch,
            heartbeat_interval_ms: 0,
            assignment: None,
        })
    }

    /// Drop a member and release its partitions; the rest of the group rebalances.
    fn remove_member(&mut self, member_id: &str) {
        let Some(member) = self.members.remove(member_id) else {
            return;
        };
        if let Some(instance) = &member.instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
        self.owners.retain(|_, owner| owner != member_id);
        self.target.remove(member_id);
        self.group_epoch += 1;
        self.dirty = true;
        // Nobody left to heartbeat: compute the (empty) target now so the group reads Empty,
        // not Assigning.
        if self.members.is_empty() {
            self.subscribed_topics.clear();
            self.assignment_epoch = self.group_epoch;
        }
    }

    /// Expire members whose session ran out, or who did not revoke in time. Returns the ids
    /// removed.
    pub fn tick(&mut self, now: i64) -> Vec<String> {
        let session = self.config.session_timeout_ms;
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                now - m.last_heartbeat >= session || m.revocation_deadline.is_some_and(|d| now >= d)
            })
            .map(|m| m.id.clone())
            .collect();
        for id in &expired {
            self.remove_member(id);
        }
        expired
    }

    /// Each member's topics: the names it lists that exist, plus what its regex matches.
    fn member_topics(member: &ConsumerMember, topics: &TopicCatalog) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = member
            .subscribed_topic_names
            .iter()
            .filter(|n| topics.contains_key(*n))
            .cloned()
            .collect();
        if let Some(re) = &member.regex_matcher {
            out.extend(topics.keys().filter(|n| re.is_match(n)).cloned());
        }
        out
    }

    fn resolve_subscribed_topics(&self, topics: &TopicCatalog) -> BTreeMap<String, TopicShape> {
        let mut out = BTreeMap::new();
        for member in self.members.values() {
            for name in Self::member_topics(member, topics) {
                if let Some(shape) = topics.get(&name) {
                    out.insert(name, *shape);
                }
            }
        }
        out
    }

    fn compute_target(&mut self, topics: &TopicCatalog) {
        let subscriptions: BTreeMap<String, BTreeSet<String>> = self
            .members
            .values()
            .map(|m| (m.id.clone(), Self::member_topics(m, topics)))
            .collect();
        // The assignor most members prefer; the default when none asks.
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = &m.server_assignor {
                *votes.entry(a).or_default() += 1;
            }
        }
        self.assignor = votes
            .iter()
            .max_by_key(|(_, n)| **n)
            .and_then(|(name, _)| AssignorKind::parse(name))
            .unwrap_or(AssignorKind::ALL[0]);
        self.target = self
            .assignor
            .assign(&subscriptions, &self.subscribed_topics, &self.target);
        self.assignment_epoch = self.group_epoch;
    }

    /// Move one member towards its target (Kafka's `CurrentAssignmentBuilder`).
    fn reconcile(&mut self, member_id: &str, owned: Option<&TopicPartitions>, now: i64) {
        let Some(member) = self.members.get_mut(member_id) else {
            return;
        };
        match member.state {
            MemberState::Stable if member.member_epoch == self.assignment_epoch => return,
            MemberState::UnrevokedPartitions => {
                // Still owns something it was asked to give up (or did not say): wait.
                let still_owns = owned.is_none_or(|o| intersects(o, &member.revoking));
                if still_owns {
                    return;
                }
                let revoked = std::mem::take(&mut member.revoking);
                for (id, partitions) in revoked {
                    for p in partitions {
                        if self.owners.get(&(id, p)).map(String::as_str) == Some(member_id) {
                            self.owners.remove(&(id, p));
                        }
                    }
                }
                member.revocation_deadline = None;
            }
            _ => {}
        }
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let mut kept = TopicPartitions::new();
        let mut revoke = TopicPartitions::new();
        for (id, partitions) in &member.assigned {
            for &p in partitions {
                let into = if target.get(id).is_some_and(|t| t.contains(&p)) {
                    &mut kept
                } else {
                    &mut revoke
                };
                into.entry(*id).or_default().insert(p);
            }
        }
        if !revoke.is_empty() {
            member.assigned = kept;
            member.revoking = revoke;
            member.state = MemberState::UnrevokedPartitions;
            member.revocation_deadline = Some(now + i64::from(member.rebalance_timeout_ms.max(0)));
            return;
        }
        let mut unreleased = false;
        for (id, partitions) in &target {
            for &p in partitions {
                if kept.get(id).is_some_and(|k| k.contains(&p)) {
                    continue;
                }
                match self.owners.get(&(*id, p)) {
                    Some(owner) if owner != member_id => unreleased = true,
                    _ => {
                        self.owners.insert((*id, p), member_id.to_string());
                        kept.entry(*id).or_default().insert(p);
                    }
                }
            }
        }
        member.assigned = kept;
        if member.member_epoch != self.assignment_epoch {
            member.previous_member_epoch = member.member_epoch;
            member.member_epoch = self.assignment_epoch;
        }
        member.state = if unreleased {
            MemberState::UnreleasedPartitions
        } else {
            MemberState::Stable
        };
    }
}

/// A matcher for whole topic names; `None` for a pattern that does not compile (refused when
/// the member sent it).
fn whole_name_matcher(regex: &str) -> Option<regex::Regex> {
    regex::Regex::new(&format!("^(?:{regex})$")).ok()
}

fn is_subset(small: &TopicPartitions, big: &TopicPartitions) -> bool {
    small
        .iter()
        .all(|(id, ps)| ps.is_empty() || big.get(id).is_some_and(|b| ps.is_subset(b)))
}

fn intersects(a: &TopicPartitions, b: &TopicPartitions) -> bool {
    a.iter()
        .any(|(id, ps)| b.get(id).is_some_and(|o| !ps.is_disjoint(o)))
}
