//! One classic consumer group as a pure state machine: no I/O, no clock, no randomness.
//!
//! Inputs are requests and timer ticks, each with `now` (wall-clock millis) and, where Kafka
//! generates a member id, the id to use. Outputs are answers to deferred requests (JoinGroup and
//! SyncGroup wait for the rest of the group), identified by the [`Token`] the runtime gave the
//! request, plus a flag asking the runtime to persist the group before delivering them.
//!
//! The semantics follow Kafka's classic `GroupCoordinator` (states Empty, PreparingRebalance,
//! CompletingRebalance, Stable, Dead; the KIP-394 member-id round trip; KIP-345 static
//! membership; initial rebalance delay; session, rebalance and pending-sync timeouts). The
//! machine answers with Kafka error codes directly because choosing them *is* its job: these are
//! protocol outcomes, not internal failures to be mapped.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

/// Identifies a deferred request whose answer the runtime is waiting for.
pub type Token = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name Kafka uses in DescribeGroups and ListGroups.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// Broker-wide group settings (Kafka's group.* configs).
#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// group.initial.rebalance.delay.ms: how long the first rebalance of an empty group waits
    /// for more members, so a fleet starting together rebalances once.
    pub initial_rebalance_delay_ms: i64,
    /// How long a new member may wait in its first JoinGroup without heartbeating (Kafka's
    /// fixed 5 minutes), so a client that vanished mid-join does not hold the group forever.
    pub new_member_join_timeout_ms: i64,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            new_member_join_timeout_ms: 300_000,
        }
    }
}

/// A committed offset with what Kafka stores alongside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    /// Wall-clock millis of the commit, the base for retention of standalone consumers' offsets.
    pub commit_timestamp: i64,
}

#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// Supported protocols (assignors) in the member's order of preference, with metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// What the leader assigned in the current generation.
    pub assignment: Bytes,
    last_heartbeat: i64,
    awaiting_join: Option<Token>,
    awaiting_sync: Option<Token>,
    /// Joined but not yet through a completed rebalance (gets the longer join timeout).
    is_new: bool,
}

impl Member {
    /// The metadata the member sent for `protocol`, empty if it does not support it.
    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// A JoinGroup, already decoded and defaulted by the handler.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a member without an id gets one back with MEMBER_ID_REQUIRED (KIP-394).
    pub require_known_member_id: bool,
    /// The id to give the member if it needs a new one (the runtime generates it).
    pub fresh_member_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JoinResult {
    pub error: Option<ResponseError>,
    pub member_id: String,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    /// Filled for the leader only: everyone's metadata for the selected protocol.
    pub members: Vec<JoinedMember>,
}

impl JoinResult {
    pub fn failed(error: ResponseError, member_id: &str) -> JoinResult {
        JoinResult {
            error: Some(error),
            member_id: member_id.to_string(),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            members: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SyncResult {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub fn failed(error: ResponseError) -> SyncResult {
        SyncResult {
            error: Some(error),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// An answer to a deferred request.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Join(Token, JoinResult),
    Sync(Token, SyncResult),
}

/// The join phase of a rebalance: when it ends at the latest.
#[derive(Debug, Clone)]
struct JoinPhase {
    deadline: i64,
    /// Set while the group's first rebalance is held back by the initial delay: the rebalance
    /// time still left for extensions. An initial phase only ends by its timer.
    initial_remaining: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Group {
    pub id: String,
    config: GroupConfig,
    state: GroupState,
    /// When the state last changed; retention of an empty group's offsets counts from here.
    pub state_timestamp: i64,
    generation: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// group.instance.id → current member id.
    static_members: BTreeMap<String, String>,
    /// Ids handed out with MEMBER_ID_REQUIRED, with the time they expire if never used.
    pending_members: BTreeMap<String, i64>,
    join_phase: Option<JoinPhase>,
    /// A member joined during the initial delay; the delay is extended (Kafka's
    /// InitialDelayedJoin).
    new_member_added: bool,
    /// Members that have not sent SyncGroup for this generation, and when they are dropped.
    pending_sync: BTreeSet<String>,
    sync_deadline: Option<i64>,
    /// Topics the members subscribe to (consumer protocol only), for OffsetDelete and retention.
    subscribed_topics: Option<BTreeSet<String>>,
    offsets: BTreeMap<(String, i32), CommittedOffset>,
    /// The group's membership changed in a way that must be persisted before answering.
    needs_store: bool,
}

impl Group {
    pub fn new(id: &str, config: GroupConfig, now: i64) -> Group {
        Group {
            id: id.to_string(),
            config,
            state: GroupState::Empty,
            state_timestamp: now,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            pending_members: BTreeMap::new(),
            join_phase: None,
            new_member_added: false,
            pending_sync: BTreeSet::new(),
            sync_deadline: None,
            subscribed_topics: None,
            offsets: BTreeMap::new(),
            needs_store: false,
        }
    }

    /// Rebuild a group from its last stored metadata. With members it is Stable, as Kafka loads
    /// it: the members keep their ids, generation and assignments and have one session timeout
    /// from `now` to heartbeat.
    pub fn restore(stored: StoredGroup, config: GroupConfig, now: i64) -> Group {
        let mut group = Group::new(&stored.id, config, stored.state_timestamp.unwrap_or(now));
        group.generation = stored.generation;
        group.protocol_type = (!stored.protocol_type.is_empty()).then_some(stored.protocol_type);
        group.protocol_name = stored.protocol_name;
        group.leader = stored.leader;
        for m in stored.members {
            if let Some(instance) = &m.instance_id {
                group.static_members.insert(instance.clone(), m.id.clone());
            }
            let protocols = match &group.protocol_name {
                Some(p) => vec![(p.clone(), m.subscription.clone())],
                None => Vec::new(),
            };
            group.members.insert(
                m.id.clone(),
                Member {
                    id: m.id,
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocols,
                    assignment: m.assignment,
                    last_heartbeat: now,
                    awaiting_join: None,
                    awaiting_sync: None,
                    is_new: false,
                },
            );
        }
        if !group.members.is_empty() {
            group.state = GroupState::Stable;
            if group
                .leader
                .as_ref()
                .is_none_or(|l| !group.members.contains_key(l))
            {
                group.leader = group.members.keys().next().cloned();
            }
        }
        group.subscribed_topics = group.compute_subscribed_topics();
        group
    }

    /// What is persisted in the group's metadata record.
    pub fn stored(&self) -> StoredGroup {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        StoredGroup {
            id: self.id.clone(),
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone(),
            state_timestamp: Some(self.state_timestamp),
            members: self
                .members
                .values()
                .map(|m| StoredMember {
                    id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata_for(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    pub fn state(&self) -> GroupState {
        self.state
    }
    pub fn generation(&self) -> i32 {
        self.generation
    }
    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }
    pub fn protocol_name(&self) -> Option<&str> {
        self.protocol_name.as_deref()
    }
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }
    pub fn offsets(&self) -> &BTreeMap<(String, i32), CommittedOffset> {
        &self.offsets
    }
    pub fn offset(&self, topic: &str, partition: i32) -> Option<&CommittedOffset> {
        self.offsets.get(&(topic.to_string(), partition))
    }

    /// Whether the runtime must persist the group before delivering this step's outputs.
    /// Reading it clears it.
    pub fn take_needs_store(&mut self) -> bool {
        std::mem::take(&mut self.needs_store)
    }

    /// The deferred JoinGroup and SyncGroup requests of the members, to fail when the group
    /// moves to another coordinator.
    pub fn waiting_tokens(&self) -> Vec<Token> {
        self.members
            .values()
            .flat_map(|m| m.awaiting_join.into_iter().chain(m.awaiting_sync))
            .collect()
    }

    /// A group with no members, no member ids handed out and no offsets holds nothing worth
    /// keeping.
    pub fn is_removable(&self) -> bool {
        self.state == GroupState::Empty
            && self.offsets.is_empty()
            && self.pending_members.is_empty()
    }

    fn is_static_fenced(&self, instance_id: Option<&str>, member_id: &str) -> bool {
        instance_id
            .and_then(|i| self.static_members.get(i))
            .is_some_and(|current| current != member_id)
    }

    fn max_rebalance_timeout(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    // ---- JoinGroup ------------------------------------------------------------------------

    pub fn join(&mut self, req: JoinRequest, token: Token, now: i64, out: &mut Vec<Output>) {
        let fail = |out: &mut Vec<Output>, e: ResponseError, id: &str| {
            out.push(Output::Join(token, JoinResult::failed(e, id)));
        };
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return fail(out, ResponseError::InvalidSessionTimeout, &req.member_id);
        }
        if self.state == GroupState::Dead {
            // The group is being deleted or moved; the client looks the coordinator up again.
            return fail(out, ResponseError::CoordinatorNotAvailable, &req.member_id);
        }
        if !self.supports_protocols(&req.protocol_type, &req.protocols) {
            return fail(
                out,
                ResponseError::InconsistentGroupProtocol,
                &req.member_id,
            );
        }
        if req.member_id.is_empty() {
            let id = req.fresh_member_id.clone();
            match req.instance_id.clone() {
                Some(instance) => match self.static_members.get(&instance).cloned() {
                    Some(old_id) => self.rejoin_static_member(&old_id, &id, req, token, now, out),
                    None => self.add_member_and_rebalance(&id, req, token, now, out),
                },
                None if req.require_known_member_id => {
                    // KIP-394: hand out the id first so a client that never comes back with it
                    // cannot leave an unknown member in the group.
                    let deadline = now + i64::from(req.session_timeout_ms);
                    self.pending_members.insert(id.clone(), deadline);
                    fail(out, ResponseError::MemberIdRequired, &id);
                }
                None => self.add_member_and_rebalance(&id, req, token, now, out),
            }
        } else {
            let id = req.member_id.clone();
            if self.is_static_fenced(req.instance_id.as_deref(), &id) {
                return fail(out, ResponseError::FencedInstanceId, &id);
            }
            if self.pending_members.remove(&id).is_some() {
                self.add_member_and_rebalance(&id, req, token, now, out);
                self.check_join_deadline(now, out);
                return;
            }
            let Some(member) = self.members.get(&id) else {
                return fail(out, ResponseError::UnknownMemberId, &id);
            };
            let same_protocols = member.protocols == req.protocols;
            let is_leader = self.leader.as_deref() == Some(id.as_str());
            match self.state {
                GroupState::PreparingRebalance => {
                    self.update_member_and_rebalance(&id, req, token, now, out)
                }
                GroupState::CompletingRebalance if same_protocols => {
                    // A retried join of the current generation: answer it again.
                    let result = self.join_result(&id, is_leader);
                    out.push(Output::Join(token, result));
                }
                GroupState::Stable if same_protocols && !is_leader => {
                    let result = self.join_result(&id, false);
                    out.push(Output::Join(token, result));
                }
                GroupState::CompletingRebalance | GroupState::Stable => {
                    // The leader rejoining, or changed subscriptions: a new assignment is needed.
                    self.update_member_and_rebalance(&id, req, token, now, out)
                }
                GroupState::Empty | GroupState::Dead => {
                    fail(out, ResponseError::UnknownMemberId, &id)
                }
            }
        }
        self.check_join_deadline(now, out);
    }

    /// Kafka's `supportsProtocols`: an empty group takes any non-empty protocol list; otherwise
    /// the protocol type must match and one protocol must be supported by every member.
    fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(name, _)| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
    }

    fn add_member_and_rebalance(
        &mut self,
        id: &str,
        req: JoinRequest,
        token: Token,
        now: i64,
        out: &mut Vec<Output>,
    ) {
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        if let Some(instance) = &req.instance_id {
            self.static_members.insert(instance.clone(), id.to_string());
        }
        if self.leader.is_none() {
            self.leader = Some(id.to_string());
        }
        self.members.insert(
            id.to_string(),
            Member {
                id: id.to_string(),
                instance_id: req.instance_id,
                client_id: req.client_id,
                client_host: req.client_host,
                session_timeout_ms: req.session_timeout_ms,
                rebalance_timeout_ms: req.rebalance_timeout_ms,
                protocols: req.protocols,
                assignment: Bytes::new(),
                last_heartbeat: now,
                awaiting_join: Some(token),
                awaiting_sync: None,
                is_new: true,
            },
        );
        if self.state == GroupState::PreparingRebalance && self.generation == 0 {
            self.new_member_added = true;
        }
        self.maybe_prepare_rebalance(now, out);
        self.try_complete_join(now, out);
    }

    fn update_member_and_rebalance(
        &mut self,
        id: &str,
        req: JoinRequest,
        token: Token,
        now: i64,
        out: &mut Vec<Output>,
    ) {
        if let Some(member) = self.members.get_mut(id) {
            member.protocols = req.protocols;
            member.session_timeout_ms = req.session_timeout_ms;
            member.rebalance_timeout_ms = req.rebalance_timeout_ms;
            member.client_id = req.client_id;
            member.client_host = req.client_host;
            member.last_heartbeat = now;
            if let Some(previous) = member.awaiting_join.replace(token) {
                // The client gave up on its earlier join; only the newest one is answered.
                out.push(Output::Join(
                    previous,
                    JoinResult::failed(ResponseError::RebalanceInProgress, id),
                ));
            }
        }
        self.maybe_prepare_rebalance(now, out);
        self.try_complete_join(now, out);
    }

    /// A static member rejoins with a new member id (it restarted). Its old id is fenced. In a
    /// Stable group whose protocol choice is unchanged it gets its assignment back without a
    /// rebalance (KIP-345).
    fn rejoin_static_member(
        &mut self,
        old_id: &str,
        new_id: &str,
        req: JoinRequest,
        token: Token,
        now: i64,
        out: &mut Vec<Output>,
    ) {
        let leader_before = self.leader.clone().unwrap_or_default();
        let Some(mut member) = self.members.remove(old_id) else {
            return;
        };
        if let Some(t) = member.awaiting_join.take() {
            out.push(Output::Join(
                t,
                JoinResult::failed(ResponseError::FencedInstanceId, old_id),
            ));
        }
        if let Some(t) = member.awaiting_sync.take() {
            out.push(Output::Sync(
                t,
                SyncResult::failed(ResponseError::FencedInstanceId),
            ));
        }
        member.id = new_id.to_string();
        member.protocols = req.protocols;
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.client_id = req.client_id;
        member.client_host = req.client_host;
        member.last_heartbeat = now;
        member.awaiting_join = Some(token);
        self.members.insert(new_id.to_string(), member);
        if let Some(instance) = &req.instance_id {
            self.static_members
                .insert(instance.clone(), new_id.to_string());
        }
        if self.leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.to_string());
        }
        if self.pending_sync.remove(old_id) {
            self.pending_sync.insert(new_id.to_string());
        }
        match self.state {
            GroupState::Stable => {
                if self.protocol_name.as_deref() == self.select_protocol().as_deref() {
                    if let Some(m) = self.members.get_mut(new_id) {
                        m.awaiting_join = None;
                    }
                    self.needs_store = true;
                    // The old leader id is returned so that no member believes it must assign:
                    // a Stable group would not broadcast a new assignment anyway.
                    out.push(Output::Join(
                        token,
                        JoinResult {
                            error: None,
                            member_id: new_id.to_string(),
                            generation_id: self.generation,
                            protocol_type: self.protocol_type.clone(),
                            protocol_name: self.protocol_name.clone(),
                            leader: leader_before,
                            members: Vec::new(),
                        },
                    ));
                } else {
                    self.prepare_rebalance(now, out);
                }
            }
            // The leader may already be assigning with the old id; start over.
            GroupState::CompletingRebalance => self.prepare_rebalance(now, out),
            GroupState::PreparingRebalance => self.try_complete_join(now, out),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    fn join_result(&self, member_id: &str, with_members: bool) -> JoinResult {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        JoinResult {
            error: None,
            member_id: member_id.to_string(),
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            members: if with_members {
                self.members
                    .values()
                    .map(|m| JoinedMember {
                        member_id: m.id.clone(),
                        instance_id: m.instance_id.clone(),
                        metadata: m.metadata_for(&protocol),
                    })
                    .collect()
            } else {
                Vec::new()
            },
        }
    }

    fn maybe_prepare_rebalance(&mut self, now: i64, out: &mut Vec<Output>) {
        if matches!(
            self.state,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        ) {
            self.prepare_rebalance(now, out);
        }
    }

    fn prepare_rebalance(&mut self, now: i64, out: &mut Vec<Output>) {
        if self.state == GroupState::CompletingRebalance {
            // Assignments of the aborted generation are void; waiting syncs learn it now.
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(t) = m.awaiting_sync.take() {
                    out.push(Output::Sync(
                        t,
                        SyncResult::failed(ResponseError::RebalanceInProgress),
                    ));
                }
            }
        }
        self.pending_sync.clear();
        self.sync_deadline = None;
        let rebalance_timeout = self.max_rebalance_timeout();
        self.join_phase = Some(if self.state == GroupState::Empty {
            let delay = self.config.initial_rebalance_delay_ms;
            JoinPhase {
                deadline: now + delay,
                initial_remaining: Some((rebalance_timeout - delay).max(0)),
            }
        } else {
            JoinPhase {
                deadline: now + rebalance_timeout,
                initial_remaining: None,
            }
        });
        self.set_state(GroupState::PreparingRebalance, now);
    }

    fn set_state(&mut self, state: GroupState, now: i64) {
        self.state = state;
        self.state_timestamp = now;
    }

    fn all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    /// Complete the join phase early once everyone has rejoined (not during the initial delay,
    /// which only its timer ends).
    fn try_complete_join(&mut self, now: i64, out: &mut Vec<Output>) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let initial = self
            .join_phase
            .as_ref()
            .is_some_and(|p| p.initial_remaining.is_some());
        if !initial && self.all_members_joined() {
            self.complete_join(now, out);
        }
    }

    fn check_join_deadline(&mut self, now: i64, out: &mut Vec<Output>) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let Some(phase) = self.join_phase.as_mut() else {
            return;
        };
        if now < phase.deadline {
            return;
        }
        if let Some(remaining) = phase.initial_remaining {
            if self.new_member_added && remaining > 0 {
                // Members are still arriving: wait another delay, within the rebalance timeout.
                self.new_member_added = false;
                let delay = self.config.initial_rebalance_delay_ms.min(remaining);
                phase.deadline = now + delay;
                phase.initial_remaining = Some(remaining - delay);
                if delay > 0 {
                    return;
                }
            }
        }
        self.complete_join(now, out);
    }

    fn complete_join(&mut self, now: i64, out: &mut Vec<Output>) {
        self.join_phase = None;
        self.new_member_added = false;
        // Members that did not rejoin in time are out (static ones too, as in Kafka).
        let failed: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in failed {
            self.remove_member(&id, out);
        }
        self.generation += 1;
        if self.members.is_empty() {
            self.protocol_name = None;
            self.subscribed_topics = None;
            self.set_state(GroupState::Empty, now);
            self.needs_store = true;
            return;
        }
        if self
            .leader
            .as_ref()
            .is_none_or(|l| !self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.protocol_name = self.select_protocol();
        self.subscribed_topics = self.compute_subscribed_topics();
        self.set_state(GroupState::CompletingRebalance, now);
        self.pending_sync = self.members.keys().cloned().collect();
        self.sync_deadline = Some(now + self.max_rebalance_timeout());
        let leader = self.leader.clone().unwrap_or_default();
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let result = self.join_result(&id, id == leader);
            if let Some(m) = self.members.get_mut(&id) {
                m.is_new = false;
                m.last_heartbeat = now;
                if let Some(t) = m.awaiting_join.take() {
                    out.push(Output::Join(t, result));
                }
            }
        }
    }

    /// Kafka's protocol selection: among the protocols every member supports, each member votes
    /// for its most preferred one; the most votes win, ties going to the leader's preference.
    pub fn select_protocol(&self) -> Option<String> {
        let leader = self.leader.as_ref().and_then(|l| self.members.get(l));
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = leader
            .unwrap_or(first)
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(p, _)| &p == n))
            })
            .collect();
        let mut votes: BTreeMap<&String, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some((n, _)) = m.protocols.iter().find(|(p, _)| candidates.contains(&p)) {
                *votes.entry(n).or_default() += 1;
            }
        }
        // Candidates are in the leader's order; `max_by_key` keeps the last maximum, so scan
        // in reverse to let the earliest (most preferred) win ties.
        candidates
            .iter()
            .rev()
            .max_by_key(|n| votes.get(**n).copied().unwrap_or(0))
            .map(|n| n.to_string())
    }

    fn compute_subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for m in self.members.values() {
            topics.extend(subscription_topics(&m.metadata_for(protocol))?);
        }
        Some(topics)
    }

    /// Whether the group consumes `topic`; unknown subscriptions count as subscribed, so
    /// nothing is deleted or expired on a guess.
    pub fn is_subscribed_to(&self, topic: &str) -> bool {
        self.subscribed_topics
            .as_ref()
            .is_none_or(|t| t.contains(topic))
    }

    fn remove_member(&mut self, id: &str, out: &mut Vec<Output>) {
        let Some(mut m) = self.members.remove(id) else {
            return;
        };
        if let Some(t) = m.awaiting_join.take() {
            out.push(Output::Join(
                t,
                JoinResult::failed(ResponseError::UnknownMemberId, id),
            ));
        }
        if let Some(t) = m.awaiting_sync.take() {
            out.push(Output::Sync(
                t,
                SyncResult::failed(ResponseError::UnknownMemberId),
            ));
        }
        if let Some(instance) = &m.instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(id) {
                self.static_members.remove(instance);
            }
        }
        self.pending_sync.remove(id);
        if self.leader.as_deref() == Some(id) {
            self.leader = self
                .members
                .values()
                .find(|m| m.awaiting_join.is_some())
                .or_else(|| self.members.values().next())
                .map(|m| m.id.clone());
        }
    }

    fn remove_member_and_update(&mut self, id: &str, now: i64, out: &mut Vec<Output>) {
        self.remove_member(id, out);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.maybe_prepare_rebalance(now, out);
                self.try_complete_join(now, out);
            }
            GroupState::PreparingRebalance => self.try_complete_join(now, out),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    // ---- SyncGroup ------------------------------------------------------------------------

    pub fn sync(&mut self, req: SyncRequest, token: Token, now: i64, out: &mut Vec<Output>) {
        let error = if self.state == GroupState::Dead {
            Some(ResponseError::CoordinatorNotAvailable)
        } else if self.is_static_fenced(req.instance_id.as_deref(), &req.member_id) {
            Some(ResponseError::FencedInstanceId)
        } else if !self.members.contains_key(&req.member_id) {
            Some(ResponseError::UnknownMemberId)
        } else if req.generation_id != self.generation {
            Some(ResponseError::IllegalGeneration)
        } else if req
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != self.protocol_type.as_ref())
            || req
                .protocol_name
                .as_ref()
                .is_some_and(|n| Some(n) != self.protocol_name.as_ref())
        {
            Some(ResponseError::InconsistentGroupProtocol)
        } else {
            match self.state {
                GroupState::Empty => Some(ResponseError::UnknownMemberId),
                GroupState::PreparingRebalance => Some(ResponseError::RebalanceInProgress),
                _ => None,
            }
        };
        if let Some(e) = error {
            out.push(Output::Sync(token, SyncResult::failed(e)));
            return;
        }
        self.pending_sync.remove(&req.member_id);
        if let Some(m) = self.members.get_mut(&req.member_id) {
            m.last_heartbeat = now;
        }
        if self.state == GroupState::Stable {
            let assignment = self.members[&req.member_id].assignment.clone();
            out.push(Output::Sync(token, self.sync_ok(assignment)));
            return;
        }
        // CompletingRebalance: wait for the leader's assignment.
        if let Some(m) = self.members.get_mut(&req.member_id) {
            if let Some(previous) = m.awaiting_sync.replace(token) {
                out.push(Output::Sync(
                    previous,
                    SyncResult::failed(ResponseError::RebalanceInProgress),
                ));
            }
        }
        if self.leader.as_deref() == Some(req.member_id.as_str()) {
            let mut assignments: BTreeMap<String, Bytes> = req.assignments.into_iter().collect();
            for m in self.members.values_mut() {
                // Members the leader left out get an empty assignment, as in Kafka.
                m.assignment = assignments.remove(&m.id).unwrap_or_default();
            }
            self.set_state(GroupState::Stable, now);
            self.needs_store = true;
            let waiting: Vec<(Token, Bytes)> = self
                .members
                .values_mut()
                .filter_map(|m| m.awaiting_sync.take().map(|t| (t, m.assignment.clone())))
                .collect();
            for (t, assignment) in waiting {
                out.push(Output::Sync(t, self.sync_ok(assignment)));
            }
        }
    }

    fn sync_ok(&self, assignment: Bytes) -> SyncResult {
        SyncResult {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment,
        }
    }

    // ---- Heartbeat, LeaveGroup ------------------------------------------------------------

    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: i64,
    ) -> Option<ResponseError> {
        if self.state == GroupState::Dead {
            return Some(ResponseError::CoordinatorNotAvailable);
        }
        if self.is_static_fenced(instance_id, member_id) {
            return Some(ResponseError::FencedInstanceId);
        }
        let Some(member) = self.members.get_mut(member_id) else {
            return Some(ResponseError::UnknownMemberId);
        };
        if generation != self.generation {
            return Some(ResponseError::IllegalGeneration);
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => Some(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => {
                member.last_heartbeat = now;
                Some(ResponseError::RebalanceInProgress)
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                member.last_heartbeat = now;
                None
            }
        }
    }

    /// One member of a LeaveGroup. A member may be named by id, or (static members removed by
    /// an admin) by instance id alone.
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        now: i64,
        out: &mut Vec<Output>,
    ) -> Option<ResponseError> {
        if self.state == GroupState::Dead {
            return Some(ResponseError::CoordinatorNotAvailable);
        }
        let id = if member_id.is_empty() {
            match instance_id.and_then(|i| self.static_members.get(i)) {
                Some(id) => id.clone(),
                None => return Some(ResponseError::UnknownMemberId),
            }
        } else {
            if self.is_static_fenced(instance_id, member_id) {
                return Some(ResponseError::FencedInstanceId);
            }
            if self.pending_members.remove(member_id).is_some() {
                self.try_complete_join(now, out);
                return None;
            }
            if !self.members.contains_key(member_id) {
                return Some(ResponseError::UnknownMemberId);
            }
            member_id.to_string()
        };
        self.remove_member_and_update(&id, now, out);
        self.check_join_deadline(now, out);
        None
    }

    // ---- Timers ---------------------------------------------------------------------------

    /// Expire what has timed out by `now`: unused KIP-394 ids, members whose session lapsed,
    /// members that never sent SyncGroup, and the join phase of a rebalance.
    pub fn tick(&mut self, now: i64, out: &mut Vec<Output>) {
        let expired_pending: Vec<String> = self
            .pending_members
            .iter()
            .filter(|(_, deadline)| **deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired_pending {
            self.pending_members.remove(id);
        }
        if !expired_pending.is_empty() {
            self.try_complete_join(now, out);
        }

        let new_member_timeout = self.config.new_member_join_timeout_ms;
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                let alive = if m.awaiting_join.is_some() {
                    !m.is_new || now < m.last_heartbeat + new_member_timeout
                } else {
                    m.awaiting_sync.is_some()
                        || now < m.last_heartbeat + i64::from(m.session_timeout_ms)
                };
                !alive
            })
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            self.remove_member_and_update(&id, now, out);
        }

        if let Some(deadline) = self.sync_deadline {
            if now >= deadline
                && matches!(
                    self.state,
                    GroupState::CompletingRebalance | GroupState::Stable
                )
            {
                self.sync_deadline = None;
                let missing: Vec<String> =
                    std::mem::take(&mut self.pending_sync).into_iter().collect();
                for id in missing {
                    self.remove_member_and_update(&id, now, out);
                }
            }
        }
        self.check_join_deadline(now, out);
    }

    // ---- Offsets --------------------------------------------------------------------------

    /// Whether an OffsetCommit from this member may commit now. Kafka's rules: standalone
    /// consumers (generation < 0) only commit to an empty group; group members must be current.
    pub fn check_commit(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: i64,
    ) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if self.is_static_fenced(instance_id, member_id) {
            return Err(ResponseError::FencedInstanceId);
        }
        if generation < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        let Some(member) = self.members.get_mut(member_id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        match self.state {
            GroupState::Stable | GroupState::PreparingRebalance => {
                member.last_heartbeat = now;
                Ok(())
            }
            // The member has its new generation but not its assignment yet.
            GroupState::CompletingRebalance => Err(ResponseError::RebalanceInProgress),
            GroupState::Empty | GroupState::Dead => Err(ResponseError::UnknownMemberId),
        }
    }

    pub fn set_offset(&mut self, topic: &str, partition: i32, offset: CommittedOffset) {
        self.offsets.insert((topic.to_string(), partition), offset);
    }

    pub fn remove_offset(&mut self, topic: &str, partition: i32) -> bool {
        self.offsets
            .remove(&(topic.to_string(), partition))
            .is_some()
    }

    /// Offsets whose retention has passed (Kafka 2.1+ rules): in an empty group, counted from
    /// when it became empty; for a standalone group, from each commit; in a stable consumer
    /// group, from the commit, for topics no member subscribes to any more.
    pub fn expired_offsets(&self, now: i64, retention_ms: i64) -> Vec<(String, i32)> {
        let expired = |base: i64| now - base >= retention_ms;
        let is_consumer = self.protocol_type.as_deref() == Some("consumer");
        self.offsets
            .iter()
            .filter(|((topic, _), o)| match (&self.protocol_type, self.state) {
                (Some(_), GroupState::Empty) => expired(self.state_timestamp),
                (None, _) => expired(o.commit_timestamp),
                (Some(_), GroupState::Stable) if is_consumer => {
                    self.subscribed_topics
                        .as_ref()
                        .is_some_and(|t| !t.contains(topic))
                        && expired(o.commit_timestamp)
                }
                _ => false,
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// DeleteGroups: only an empty group can go. Returns the offsets it held.
    pub fn delete(&mut self, now: i64) -> Result<Vec<(String, i32)>, ResponseError> {
        match self.state {
            GroupState::Dead => Err(ResponseError::GroupIdNotFound),
            GroupState::Empty => {
                self.set_state(GroupState::Dead, now);
                Ok(std::mem::take(&mut self.offsets).into_keys().collect())
            }
            _ => Err(ResponseError::NonEmptyGroup),
        }
    }
}

/// Topics named in a consumer-protocol subscription (the JoinGroup metadata of protocol type
/// "consumer": `i16 version, i32 count, count × (i16 len, bytes)`, the same in every version);
/// `None` if it cannot be read. Parsed by hand with bounds checks because the bytes come from
/// clients: a generic decoder would trust the count and allocate for it.
fn subscription_topics(metadata: &Bytes) -> Option<Vec<String>> {
    use bytes::Buf;
    let mut buf = metadata.clone();
    let _version = buf.try_get_i16().ok()?;
    let count = buf.try_get_i32().ok()?;
    let mut topics = Vec::new();
    for _ in 0..count.max(0) {
        let len = usize::try_from(buf.try_get_i16().ok()?).ok()?;
        if buf.remaining() < len {
            return None;
        }
        topics.push(String::from_utf8(buf.split_to(len).to_vec()).ok()?);
    }
    Some(topics)
}

/// A group's persisted metadata (the value of its record in `__consumer_offsets`).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredGroup {
    pub id: String,
    pub protocol_type: String,
    pub generation: i32,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp: Option<i64>,
    pub members: Vec<StoredMember>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}
