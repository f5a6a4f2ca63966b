//! The group state machine as a specification: join/sync/heartbeat flows, fencing, rebalances
//! on join, leave and expiry, static membership and protocol selection. No sockets, no clock.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

use super::group::*;

const SESSION: i32 = 10_000;
const REBALANCE: i32 = 30_000;

fn config(delay: i64) -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: delay,
        ..GroupConfig::default()
    }
}

/// Drives one group and collects what it answers.
struct Harness {
    group: Group,
    now: i64,
    next_token: Token,
    out: Vec<Output>,
}

impl Harness {
    fn new(delay: i64) -> Harness {
        Harness {
            group: Group::new("g", config(delay), 0),
            now: 0,
            next_token: 1,
            out: Vec::new(),
        }
    }

    fn join_req(member_id: &str, fresh: &str, protocols: &[&str]) -> JoinRequest {
        JoinRequest {
            member_id: member_id.into(),
            instance_id: None,
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: SESSION,
            rebalance_timeout_ms: REBALANCE,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), Bytes::from(format!("meta-{p}"))))
                .collect(),
            require_known_member_id: true,
            fresh_member_id: fresh.into(),
        }
    }

    /// Send a join; returns its token.
    fn join(&mut self, req: JoinRequest) -> Token {
        let token = self.next_token;
        self.next_token += 1;
        self.group.join(req, token, self.now, &mut self.out);
        token
    }

    fn sync(&mut self, member: &str, generation: i32, assignments: &[(&str, &str)]) -> Token {
        let token = self.next_token;
        self.next_token += 1;
        let req = SyncRequest {
            member_id: member.into(),
            instance_id: None,
            generation_id: generation,
            protocol_type: Some("consumer".into()),
            protocol_name: None,
            assignments: assignments
                .iter()
                .map(|(m, a)| (m.to_string(), Bytes::from(a.to_string())))
                .collect(),
        };
        self.group.sync(req, token, self.now, &mut self.out);
        token
    }

    fn tick(&mut self, at: i64) {
        self.now = at;
        self.group.tick(at, &mut self.out);
    }

    fn join_answer(&mut self, token: Token) -> Option<JoinResult> {
        let i = self
            .out
            .iter()
            .position(|o| matches!(o, Output::Join(t, _) if *t == token))?;
        match self.out.remove(i) {
            Output::Join(_, r) => Some(r),
            Output::Sync(..) => None,
        }
    }

    fn sync_answer(&mut self, token: Token) -> Option<SyncResult> {
        let i = self
            .out
            .iter()
            .position(|o| matches!(o, Output::Sync(t, _) if *t == token))?;
        match self.out.remove(i) {
            Output::Sync(_, r) => Some(r),
            Output::Join(..) => None,
        }
    }

    /// KIP-394 round trip plus the real join: returns the member id and the join's token.
    fn join_new(&mut self, fresh: &str, protocols: &[&str]) -> (String, Token) {
        let t = self.join(Self::join_req("", fresh, protocols));
        let r = self.join_answer(t).expect("first join is answered at once");
        assert_eq!(r.error, Some(ResponseError::MemberIdRequired));
        assert_eq!(r.member_id, fresh);
        let t = self.join(Self::join_req(fresh, "unused", protocols));
        (fresh.to_string(), t)
    }

    /// A one-member group in Stable at generation 1.
    fn stable_with_one(&mut self) -> String {
        let (m1, t) = self.join_new("m1", &["range"]);
        let r = self
            .join_answer(t)
            .expect("with no delay the join completes");
        assert_eq!(r.error, None);
        let s = self.sync(&m1, r.generation_id, &[(&m1, "a1")]);
        assert_eq!(self.sync_answer(s).unwrap().assignment, Bytes::from("a1"));
        m1
    }
}

#[test]
fn empty_member_id_gets_member_id_required_then_joins() {
    let mut h = Harness::new(0);
    let (m1, t) = h.join_new("m1", &["range"]);
    let r = h.join_answer(t).unwrap();
    assert_eq!(r.error, None);
    assert_eq!(r.generation_id, 1);
    assert_eq!(r.leader, m1);
    assert_eq!(r.protocol_name.as_deref(), Some("range"));
    assert_eq!(r.members.len(), 1, "the leader gets everyone's metadata");
    assert_eq!(r.members[0].metadata, Bytes::from("meta-range"));
    assert_eq!(h.group.state(), GroupState::CompletingRebalance);
    let s = h.sync(&m1, 1, &[(&m1, "p0,p1")]);
    let sr = h.sync_answer(s).unwrap();
    assert_eq!(sr.error, None);
    assert_eq!(sr.assignment, Bytes::from("p0,p1"));
    assert_eq!(h.group.state(), GroupState::Stable);
    assert!(
        h.group.take_needs_store(),
        "a completed generation is persisted"
    );
}

#[test]
fn second_member_triggers_rebalance_and_both_get_assignments() {
    let mut h = Harness::new(0);
    let m1 = h.stable_with_one();
    let (m2, t2) = h.join_new("m2", &["range"]);
    assert!(h.join_answer(t2).is_none(), "waits for m1 to rejoin");
    assert_eq!(h.group.state(), GroupState::PreparingRebalance);
    assert_eq!(
        h.group.heartbeat(&m1, None, 1, h.now),
        Some(ResponseError::RebalanceInProgress)
    );
    let t1 = h.join(Harness::join_req(&m1, "x", &["range"]));
    let r1 = h.join_answer(t1).unwrap();
    let r2 = h.join_answer(t2).unwrap();
    assert_eq!((r1.generation_id, r2.generation_id), (2, 2));
    assert_eq!(r1.leader, m1);
    assert_eq!(r1.members.len(), 2);
    assert!(
        r2.members.is_empty(),
        "only the leader gets the member list"
    );

    let s2 = h.sync(&m2, 2, &[]);
    assert!(h.sync_answer(s2).is_none(), "followers wait for the leader");
    let s1 = h.sync(&m1, 2, &[(&m1, "a1"), (&m2, "a2")]);
    assert_eq!(h.sync_answer(s1).unwrap().assignment, Bytes::from("a1"));
    assert_eq!(h.sync_answer(s2).unwrap().assignment, Bytes::from("a2"));
    assert_eq!(h.group.heartbeat(&m2, None, 2, h.now), None);
}

#[test]
fn stale_generation_and_unknown_members_are_fenced() {
    let mut h = Harness::new(0);
    let m1 = h.stable_with_one();
    assert_eq!(
        h.group.heartbeat(&m1, None, 0, h.now),
        Some(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        h.group.heartbeat("ghost", None, 1, h.now),
        Some(ResponseError::UnknownMemberId)
    );
    let s = h.sync(&m1, 7, &[]);
    assert_eq!(
        h.sync_answer(s).unwrap().error,
        Some(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        h.group.check_commit(&m1, None, 0, h.now),
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        h.group.check_commit("", None, -1, h.now),
        Err(ResponseError::UnknownMemberId),
        "a standalone commit to a group with members is refused"
    );
    assert_eq!(h.group.check_commit(&m1, None, 1, h.now), Ok(()));
    let t = h.join(Harness::join_req("ghost", "x", &["range"]));
    assert_eq!(
        h.join_answer(t).unwrap().error,
        Some(ResponseError::UnknownMemberId)
    );
}

#[test]
fn commit_during_completing_rebalance_is_rebalance_in_progress() {
    let mut h = Harness::new(0);
    let (m1, t) = h.join_new("m1", &["range"]);
    h.join_answer(t).unwrap();
    assert_eq!(
        h.group.check_commit(&m1, None, 1, h.now),
        Err(ResponseError::RebalanceInProgress)
    );
}

#[test]
fn expired_session_removes_member_and_rebalances() {
    let mut h = Harness::new(0);
    let m1 = h.stable_with_one();
    let (m2, t2) = h.join_new("m2", &["range"]);
    let t1 = h.join(Harness::join_req(&m1, "x", &["range"]));
    h.join_answer(t1).unwrap();
    h.join_answer(t2).unwrap();
    let s2 = h.sync(&m2, 2, &[]);
    let s1 = h.sync(&m1, 2, &[(&m1, "a1"), (&m2, "a2")]);
    h.sync_answer(s1).unwrap();
    h.sync_answer(s2).unwrap();

    // m1 keeps heartbeating, m2 goes silent.
    h.tick(5_000);
    assert_eq!(h.group.heartbeat(&m1, None, 2, 5_000), None);
    h.tick(SESSION as i64 + 1);
    assert_eq!(h.group.state(), GroupState::PreparingRebalance);
    assert_eq!(
        h.group.heartbeat(&m2, None, 2, h.now),
        Some(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        h.group.heartbeat(&m1, None, 2, h.now),
        Some(ResponseError::RebalanceInProgress)
    );
    let t1 = h.join(Harness::join_req(&m1, "x", &["range"]));
    let r = h.join_answer(t1).unwrap();
    assert_eq!(r.generation_id, 3);
    assert_eq!(r.members.len(), 1);
}

#[test]
fn members_that_miss_the_rebalance_timeout_are_dropped() {
    let mut h = Harness::new(0);
    let m1 = h.stable_with_one();
    let (_m2, t2) = h.join_new("m2", &["range"]);
    // m1 never rejoins but keeps heartbeating, as a stuck poll loop would.
    for at in (5_000..REBALANCE as i64).step_by(5_000) {
        h.tick(at);
        h.group.heartbeat(&m1, None, 1, h.now);
        assert!(h.join_answer(t2).is_none(), "still waiting at {at}");
    }
    h.tick(REBALANCE as i64);
    let r = h
        .join_answer(t2)
        .expect("the join phase ends at the rebalance timeout");
    assert_eq!(r.error, None);
    assert_eq!(r.generation_id, 2);
    assert_eq!(r.leader, "m2", "leadership moves to a member that rejoined");
    assert_eq!(
        h.group.heartbeat(&m1, None, 1, h.now),
        Some(ResponseError::UnknownMemberId)
    );
}

#[test]
fn leave_rebalances_the_rest_and_last_leave_empties_the_group() {
    let mut h = Harness::new(0);
    let m1 = h.stable_with_one();
    let (m2, t2) = h.join_new("m2", &["range"]);
    let t1 = h.join(Harness::join_req(&m1, "x", &["range"]));
    h.join_answer(t1).unwrap();
    h.join_answer(t2).unwrap();
    let s2 = h.sync(&m2, 2, &[]);
    let s1 = h.sync(&m1, 2, &[(&m1, "a1"), (&m2, "a2")]);
    h.sync_answer(s1).unwrap();
    h.sync_answer(s2).unwrap();

    let mut out = Vec::new();
    assert_eq!(h.group.leave(&m1, None, h.now, &mut out), None);
    assert_eq!(h.group.state(), GroupState::PreparingRebalance);
    let t2 = h.join(Harness::join_req(&m2, "x", &["range"]));
    let r = h.join_answer(t2).unwrap();
    assert_eq!(r.generation_id, 3);
    assert_eq!(r.leader, m2);
    assert_eq!(
        h.group.leave("ghost", None, h.now, &mut out),
        Some(ResponseError::UnknownMemberId)
    );
    assert_eq!(h.group.leave(&m2, None, h.now, &mut out), None);
    assert_eq!(h.group.state(), GroupState::Empty);
    assert_eq!(h.group.generation(), 4);
}

#[test]
fn leaving_while_others_wait_completes_their_join() {
    let mut h = Harness::new(0);
    let m1 = h.stable_with_one();
    let (_m2, t2) = h.join_new("m2", &["range"]);
    let mut out = Vec::new();
    h.group.leave(&m1, None, h.now, &mut out);
    h.out.extend(out);
    let r = h.join_answer(t2).expect("everyone left has joined");
    assert_eq!(r.generation_id, 2);
    assert_eq!(r.members.len(), 1);
}

#[test]
fn static_member_rejoining_a_stable_group_keeps_its_assignment_without_rebalance() {
    let mut h = Harness::new(0);
    let mut req = Harness::join_req("", "s1-a", &["range"]);
    req.instance_id = Some("instance-1".into());
    let t = h.join(req.clone());
    let r = h
        .join_answer(t)
        .expect("static members skip MEMBER_ID_REQUIRED");
    assert_eq!(r.error, None);
    assert_eq!(r.member_id, "s1-a");
    let s = h.sync("s1-a", 1, &[("s1-a", "mine")]);
    h.sync_answer(s).unwrap();
    h.group.take_needs_store();

    // The process restarts: a new JoinGroup with no member id and the same instance id.
    req.fresh_member_id = "s1-b".into();
    let t = h.join(req);
    let r = h.join_answer(t).unwrap();
    assert_eq!(r.error, None);
    assert_eq!(r.member_id, "s1-b");
    assert_eq!(r.generation_id, 1, "no rebalance");
    assert_eq!(
        r.leader, "s1-a",
        "the old leader id is returned so nobody reassigns"
    );
    assert_eq!(h.group.state(), GroupState::Stable);
    assert!(h.group.take_needs_store(), "the new member id is persisted");

    let mut sync = SyncRequest {
        member_id: "s1-b".into(),
        instance_id: Some("instance-1".into()),
        generation_id: 1,
        protocol_type: None,
        protocol_name: None,
        assignments: Vec::new(),
    };
    let mut out = Vec::new();
    h.group.sync(sync.clone(), 99, h.now, &mut out);
    match &out[..] {
        [Output::Sync(99, r)] => assert_eq!(r.assignment, Bytes::from("mine")),
        other => panic!("expected the old assignment, got {other:?}"),
    }
    // The old incarnation is fenced.
    assert_eq!(
        h.group.heartbeat("s1-a", Some("instance-1"), 1, h.now),
        Some(ResponseError::FencedInstanceId)
    );
    sync.member_id = "s1-a".into();
    out.clear();
    h.group.sync(sync, 100, h.now, &mut out);
    assert!(matches!(
        &out[..],
        [Output::Sync(100, r)] if r.error == Some(ResponseError::FencedInstanceId)
    ));
    assert_eq!(
        h.group.check_commit("s1-a", Some("instance-1"), 1, h.now),
        Err(ResponseError::FencedInstanceId)
    );
}

#[test]
fn static_member_can_be_removed_by_instance_id() {
    let mut h = Harness::new(0);
    let mut req = Harness::join_req("", "s1", &["range"]);
    req.instance_id = Some("i1".into());
    let t = h.join(req);
    h.join_answer(t).unwrap();
    let mut out = Vec::new();
    assert_eq!(h.group.leave("", Some("i1"), h.now, &mut out), None);
    assert_eq!(h.group.members().count(), 0);
    assert_eq!(
        h.group.leave("", Some("i1"), h.now, &mut out),
        Some(ResponseError::UnknownMemberId)
    );
}

#[test]
fn protocol_is_chosen_by_member_votes_among_common_ones() {
    let mut h = Harness::new(10);
    let t1 = h.join(Harness::join_req("", "m1", &["range", "roundrobin"]));
    h.join_answer(t1).unwrap();
    let t1 = h.join(Harness::join_req("m1", "x", &["range", "roundrobin"]));
    let t2 = h.join(Harness::join_req("", "m2", &["roundrobin", "range"]));
    h.join_answer(t2).unwrap();
    let t2 = h.join(Harness::join_req("m2", "x", &["roundrobin", "range"]));
    let t3 = h.join(Harness::join_req("", "m3", &["roundrobin"]));
    h.join_answer(t3).unwrap();
    let t3 = h.join(Harness::join_req("m3", "x", &["roundrobin"]));
    h.tick(10);
    h.tick(20);
    for t in [t1, t2, t3] {
        let r = h.join_answer(t).unwrap();
        assert_eq!(
            r.protocol_name.as_deref(),
            Some("roundrobin"),
            "2 votes to 1"
        );
    }
}

#[test]
fn inconsistent_protocols_and_bad_session_timeouts_are_refused() {
    let mut h = Harness::new(0);
    h.stable_with_one();
    let t = h.join(Harness::join_req("", "m2", &["sticky"]));
    assert_eq!(
        h.join_answer(t).unwrap().error,
        Some(ResponseError::InconsistentGroupProtocol)
    );
    let mut req = Harness::join_req("", "m3", &["range"]);
    req.protocol_type = "connect".into();
    let t = h.join(req);
    assert_eq!(
        h.join_answer(t).unwrap().error,
        Some(ResponseError::InconsistentGroupProtocol)
    );
    let mut req = Harness::join_req("", "m4", &["range"]);
    req.session_timeout_ms = 10;
    let t = h.join(req);
    assert_eq!(
        h.join_answer(t).unwrap().error,
        Some(ResponseError::InvalidSessionTimeout)
    );
    let mut empty = Harness::new(0);
    let t = empty.join(Harness::join_req("", "m1", &[]));
    assert_eq!(
        empty.join_answer(t).unwrap().error,
        Some(ResponseError::InconsistentGroupProtocol),
        "a member with no protocols cannot start a group"
    );
}

#[test]
fn initial_rebalance_delay_waits_for_more_members() {
    let mut h = Harness::new(3_000);
    let (_m1, t1) = h.join_new("m1", &["range"]);
    assert!(h.join_answer(t1).is_none());
    h.tick(1_000);
    let (_m2, t2) = h.join_new("m2", &["range"]);
    h.tick(2_999);
    assert!(h.join_answer(t1).is_none());
    h.tick(3_000);
    assert!(
        h.join_answer(t1).is_none(),
        "a member arrived during the delay: wait one more delay"
    );
    h.tick(6_000);
    let r1 = h.join_answer(t1).unwrap();
    let r2 = h.join_answer(t2).unwrap();
    assert_eq!((r1.generation_id, r2.generation_id), (1, 1));
    assert_eq!(r1.members.len(), 2);
}

#[test]
fn cooperative_rounds_are_successive_rebalances() {
    // Cooperative-sticky: after the first assignment the members rejoin at once (revoking
    // nothing or something); each round must complete like any other.
    let mut h = Harness::new(0);
    let m1 = h.stable_with_one();
    for generation in 2..5 {
        let t = h.join(Harness::join_req(&m1, "x", &["range"]));
        let r = h
            .join_answer(t)
            .expect("the leader's rejoin starts and ends a round");
        assert_eq!(r.generation_id, generation);
        let s = h.sync(&m1, generation, &[(&m1, "a")]);
        assert_eq!(h.sync_answer(s).unwrap().error, None);
    }
}

#[test]
fn a_member_missing_sync_is_dropped_after_the_rebalance_timeout() {
    let mut h = Harness::new(0);
    let m1 = h.stable_with_one();
    let (m2, t2) = h.join_new("m2", &["range"]);
    let t1 = h.join(Harness::join_req(&m1, "x", &["range"]));
    h.join_answer(t1).unwrap();
    h.join_answer(t2).unwrap();
    let s1 = h.sync(&m1, 2, &[(&m1, "a1"), (&m2, "a2")]);
    h.sync_answer(s1).unwrap();
    // Both heartbeat; m2 never sends its SyncGroup.
    for at in (5_000..REBALANCE as i64).step_by(5_000) {
        h.tick(at);
        assert_eq!(h.group.heartbeat(&m1, None, 2, at), None);
        assert_eq!(h.group.heartbeat(&m2, None, 2, at), None);
    }
    h.tick(REBALANCE as i64 + 1);
    assert_eq!(h.group.state(), GroupState::PreparingRebalance);
    assert_eq!(
        h.group.heartbeat(&m2, None, 2, h.now),
        Some(ResponseError::UnknownMemberId)
    );
}

#[test]
fn offsets_of_an_empty_group_expire_after_retention() {
    let mut h = Harness::new(0);
    let m1 = h.stable_with_one();
    let offset = CommittedOffset {
        offset: 5,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp: 0,
    };
    h.group.set_offset("t", 0, offset.clone());
    assert!(
        h.group.expired_offsets(1_000_000, 100).is_empty(),
        "group has members"
    );
    let mut out = Vec::new();
    h.group.leave(&m1, None, 500, &mut out);
    assert_eq!(h.group.state(), GroupState::Empty);
    assert!(h.group.expired_offsets(550, 100).is_empty());
    assert_eq!(
        h.group.expired_offsets(600, 100),
        vec![("t".to_string(), 0)]
    );

    let mut simple = Group::new("s", config(0), 0);
    simple.set_offset("t", 0, offset);
    assert!(simple.expired_offsets(99, 100).is_empty());
    assert_eq!(simple.expired_offsets(100, 100).len(), 1);
}

#[test]
fn only_empty_groups_can_be_deleted() {
    let mut h = Harness::new(0);
    let m1 = h.stable_with_one();
    assert_eq!(h.group.delete(h.now), Err(ResponseError::NonEmptyGroup));
    let mut out = Vec::new();
    h.group.leave(&m1, None, h.now, &mut out);
    assert_eq!(h.group.delete(h.now), Ok(vec![]));
    assert_eq!(h.group.state(), GroupState::Dead);
    assert_eq!(h.group.delete(h.now), Err(ResponseError::GroupIdNotFound));
}

#[test]
fn restored_group_is_stable_with_its_members() {
    let mut h = Harness::new(0);
    let m1 = h.stable_with_one();
    let stored = h.group.stored();
    let mut restored = Group::restore(stored, config(0), 1_000);
    assert_eq!(restored.state(), GroupState::Stable);
    assert_eq!(restored.generation(), 1);
    assert_eq!(restored.heartbeat(&m1, None, 1, 1_000), None);
    let mut out = Vec::new();
    restored.sync(
        SyncRequest {
            member_id: m1.clone(),
            instance_id: None,
            generation_id: 1,
            protocol_type: None,
            protocol_name: None,
            assignments: Vec::new(),
        },
        1,
        1_000,
        &mut out,
    );
    assert!(matches!(&out[..], [Output::Sync(1, r)] if r.assignment == "a1"));
}

#[test]
fn deferred_joins_are_listed_until_answered() {
    let mut h = Harness::new(3_000);
    let (_, t) = h.join_new("m1", &["range"]);
    // The initial rebalance delay holds the join: it is waiting.
    assert!(h.join_answer(t).is_none());
    assert_eq!(h.group.waiting_tokens(), vec![t]);
    h.tick(3_000);
    assert!(h.join_answer(t).is_some());
    assert!(h.group.waiting_tokens().is_empty());
}
