//! The KIP-848 consumer group machine without I/O: joins, revocation before reassignment,
//! fencing, static members, timeouts.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use uuid::Uuid;

use super::consumer_group::*;

const A: Uuid = Uuid::from_u128(0xa);

fn catalog(partitions: i32) -> TopicCatalog {
    [("a".to_string(), TopicShape { id: A, partitions })]
        .into_iter()
        .collect()
}

fn group() -> ConsumerGroup {
    ConsumerGroup::new(
        "g",
        ConsumerGroupConfig {
            session_timeout_ms: 10_000,
            heartbeat_interval_ms: 1_000,
        },
    )
}

fn join(id: &str) -> Heartbeat {
    Heartbeat {
        member_id: id.to_string(),
        member_epoch: JOIN_EPOCH,
        rebalance_timeout_ms: 5_000,
        subscribed_topic_names: Some(vec!["a".to_string()]),
        owned: Some(TopicPartitions::new()),
        ..Heartbeat::default()
    }
}

fn beat(id: &str, epoch: i32, owned: Option<&TopicPartitions>) -> Heartbeat {
    Heartbeat {
        member_id: id.to_string(),
        member_epoch: epoch,
        rebalance_timeout_ms: -1,
        owned: owned.cloned(),
        ..Heartbeat::default()
    }
}

fn partitions(a: &TopicPartitions) -> Vec<i32> {
    a.get(&A)
        .map(|p| p.iter().copied().collect())
        .unwrap_or_default()
}

/// No partition is assigned to two members at any time.
fn check_exclusive(g: &ConsumerGroup) {
    let mut seen = BTreeMap::new();
    for m in g.members() {
        for p in partitions(&m.assigned) {
            assert!(
                seen.insert(p, m.id.clone()).is_none(),
                "partition {p} owned twice"
            );
        }
    }
}

#[test]
fn first_member_gets_everything_at_epoch_one() {
    let mut g = group();
    let a = g.heartbeat(join("m1"), &catalog(4), 0).unwrap();
    assert_eq!(a.member_epoch, 1);
    assert_eq!(a.heartbeat_interval_ms, 1_000);
    assert_eq!(partitions(a.assignment.as_ref().unwrap()), vec![0, 1, 2, 3]);
    assert_eq!(g.state(), ConsumerGroupState::Stable);
    // A plain heartbeat with nothing new sends no assignment.
    let again = g.heartbeat(beat("m1", 1, None), &catalog(4), 10).unwrap();
    assert_eq!(again.assignment, None);
    assert_eq!(again.member_epoch, 1);
}

#[test]
fn partitions_move_only_after_revocation() {
    let mut g = group();
    let t = catalog(4);
    let first = g.heartbeat(join("m1"), &t, 0).unwrap().assignment.unwrap();
    // m2 joins: epoch 2; everything is still m1's, so m2 gets nothing yet.
    let m2 = g.heartbeat(join("m2"), &t, 1).unwrap();
    assert_eq!(m2.member_epoch, 2);
    assert_eq!(
        partitions(m2.assignment.as_ref().unwrap()),
        Vec::<i32>::new()
    );
    assert_eq!(
        g.member("m2").unwrap().state,
        MemberState::UnreleasedPartitions
    );
    // Waiting for partitions: it is told to come back sooner than the configured 1 s.
    assert_eq!(m2.heartbeat_interval_ms, 100);
    check_exclusive(&g);
    // m1 is told to keep two: its epoch stays until it confirms.
    let m1 = g.heartbeat(beat("m1", 1, Some(&first)), &t, 2).unwrap();
    assert_eq!(m1.member_epoch, 1);
    assert_eq!(m1.heartbeat_interval_ms, 100);
    let kept = m1.assignment.unwrap();
    assert_eq!(partitions(&kept).len(), 2);
    assert_eq!(g.state(), ConsumerGroupState::Reconciling);
    // m2 still waits while m1 has not confirmed.
    let waiting = g.heartbeat(beat("m2", 2, None), &t, 3).unwrap();
    assert_eq!(waiting.assignment, None);
    // m1 confirms by reporting what it still owns; it moves to epoch 2.
    let m1 = g.heartbeat(beat("m1", 1, Some(&kept)), &t, 4).unwrap();
    assert_eq!(m1.member_epoch, 2);
    assert_eq!(m1.heartbeat_interval_ms, 1_000);
    // m2's next heartbeat gets the released partitions.
    let m2 = g.heartbeat(beat("m2", 2, None), &t, 5).unwrap();
    let got = partitions(m2.assignment.as_ref().unwrap());
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|p| !partitions(&kept).contains(p)));
    check_exclusive(&g);
    assert_eq!(g.state(), ConsumerGroupState::Stable);
}

#[test]
fn wrong_epochs_are_fenced_and_unknown_members_refused() {
    let mut g = group();
    let t = catalog(2);
    let a = g.heartbeat(join("m1"), &t, 0).unwrap();
    let owned = a.assignment.unwrap();
    assert_eq!(
        g.heartbeat(beat("m1", 7, None), &t, 1).unwrap_err().0,
        ResponseError::FencedMemberEpoch
    );
    assert_eq!(
        g.heartbeat(beat("nobody", 1, None), &t, 1).unwrap_err().0,
        ResponseError::UnknownMemberId
    );
    // A lost answer: the previous epoch with a subset of the assignment is accepted.
    g.heartbeat(join("m2"), &t, 2).unwrap();
    let m1 = g.heartbeat(beat("m1", 1, Some(&owned)), &t, 3).unwrap();
    let kept = m1.assignment.unwrap();
    let m1 = g.heartbeat(beat("m1", 1, Some(&kept)), &t, 4).unwrap();
    assert_eq!(m1.member_epoch, 2);
    assert!(g.heartbeat(beat("m1", 1, Some(&kept)), &t, 5).is_ok());
    // The previous epoch while claiming more than it has is fenced.
    assert_eq!(
        g.heartbeat(beat("m1", 1, Some(&owned)), &t, 6)
            .unwrap_err()
            .0,
        ResponseError::FencedMemberEpoch
    );
    // Commits check the epoch: the current one, or the one before while the member's
    // answer was in flight.
    assert_eq!(g.check_commit("m1", 2), Ok(()));
    assert_eq!(g.check_commit("m1", 1), Ok(()));
    assert_eq!(
        g.check_commit("m1", 0),
        Err(ResponseError::StaleMemberEpoch)
    );
    assert_eq!(
        g.check_commit("m1", 3),
        Err(ResponseError::StaleMemberEpoch)
    );
    assert_eq!(g.check_commit("x", 2), Err(ResponseError::UnknownMemberId));
}

#[test]
fn an_unconfirmed_assignment_is_sent_again() {
    let mut g = group();
    let t = catalog(4);
    let first = g.heartbeat(join("m1"), &t, 0).unwrap().assignment.unwrap();
    let m1 = g.heartbeat(beat("m1", 1, Some(&first)), &t, 10).unwrap();
    assert_eq!(m1.assignment, None);
    // m2 waits for two partitions; m1 gives them up and confirms.
    g.heartbeat(join("m2"), &t, 20).unwrap();
    let kept = g
        .heartbeat(beat("m1", 1, None), &t, 30)
        .unwrap()
        .assignment
        .unwrap();
    g.heartbeat(beat("m1", 1, Some(&kept)), &t, 40).unwrap();
    // The answer handing m2 the released partitions is lost (the client's request timed out):
    // its next heartbeats carry no owned partitions, as librdkafka's do.
    let lost = g.heartbeat(beat("m2", 2, None), &t, 50).unwrap();
    assert_eq!(partitions(lost.assignment.as_ref().unwrap()).len(), 2);
    let soon = g.heartbeat(beat("m2", 2, None), &t, 1_000).unwrap();
    assert_eq!(soon.assignment, None);
    // Two intervals without a confirmation: the assignment goes out again.
    let again = g.heartbeat(beat("m2", 2, None), &t, 2_050).unwrap();
    assert_eq!(again.assignment, lost.assignment);
    // Once the member reports owning it, it is not repeated.
    let owned = again.assignment.unwrap();
    let confirmed = g.heartbeat(beat("m2", 2, Some(&owned)), &t, 2_100).unwrap();
    assert_eq!(confirmed.assignment, None);
    assert_eq!(
        g.heartbeat(beat("m2", 2, None), &t, 9_000)
            .unwrap()
            .assignment,
        None
    );
    // m1 confirmed what it kept: it is never sent it again.
    assert_eq!(
        g.heartbeat(beat("m1", 2, None), &t, 9_000)
            .unwrap()
            .assignment,
        None
    );
    check_exclusive(&g);
}

#[test]
fn bad_requests_are_refused_with_a_reason() {
    let mut g = group();
    let t = catalog(1);
    let mut no_subscription = join("m1");
    no_subscription.subscribed_topic_names = None;
    let (code, message) = g.heartbeat(no_subscription, &t, 0).unwrap_err();
    assert_eq!(code, ResponseError::InvalidRequest);
    assert!(message.contains("SubscribedTopicNames"));
    let mut assignor = join("m1");
    assignor.server_assignor = Some("sticky".into());
    assert_eq!(
        g.heartbeat(assignor, &t, 0).unwrap_err().0,
        ResponseError::UnsupportedAssignor
    );
    let mut regex = join("m1");
    regex.subscribed_topic_names = None;
    regex.subscribed_topic_regex = Some("(".into());
    assert_eq!(
        g.heartbeat(regex, &t, 0).unwrap_err().0,
        ResponseError::InvalidRegularExpression
    );
    assert!(g.is_empty());
}

#[test]
fn leaving_and_session_expiry_rebalance_the_rest() {
    let mut g = group();
    let t = catalog(2);
    g.heartbeat(join("m1"), &t, 0).unwrap();
    g.heartbeat(join("m2"), &t, 0).unwrap();
    let left = g.heartbeat(beat("m1", LEAVE_EPOCH, None), &t, 1).unwrap();
    assert_eq!(left.member_epoch, LEAVE_EPOCH);
    let m2 = g.heartbeat(beat("m2", 2, None), &t, 2).unwrap();
    assert_eq!(partitions(m2.assignment.as_ref().unwrap()), vec![0, 1]);
    assert_eq!(m2.member_epoch, 3);
    // m2 goes silent: removed after the session timeout, and the group is empty.
    assert!(g.tick(5_000).is_empty());
    assert_eq!(g.tick(10_002), vec!["m2".to_string()]);
    assert_eq!(g.state(), ConsumerGroupState::Empty);
}

#[test]
fn a_member_that_does_not_revoke_in_time_is_removed() {
    let mut g = group();
    let t = catalog(2);
    let owned = g.heartbeat(join("m1"), &t, 0).unwrap().assignment.unwrap();
    g.heartbeat(join("m2"), &t, 0).unwrap();
    // m1 learns it must give one up, then never confirms (rebalance timeout 5 s).
    g.heartbeat(beat("m1", 1, Some(&owned)), &t, 100).unwrap();
    g.heartbeat(beat("m1", 1, Some(&owned)), &t, 3_000).unwrap();
    assert!(g.tick(5_000).is_empty());
    assert_eq!(g.tick(5_100), vec!["m1".to_string()]);
    let m2 = g.heartbeat(beat("m2", 2, None), &t, 5_200).unwrap();
    assert_eq!(partitions(m2.assignment.as_ref().unwrap()), vec![0, 1]);
}

#[test]
fn a_static_member_returns_to_its_partitions_without_a_rebalance() {
    let mut g = group();
    let t = catalog(4);
    let mut s1 = join("m1");
    s1.instance_id = Some("i1".into());
    g.heartbeat(s1, &t, 0).unwrap();
    let m2 = g.heartbeat(join("m2"), &t, 0).unwrap();
    assert_eq!(m2.member_epoch, 2);
    // Settle: m1 revokes, m2 picks up.
    let owned = g.member("m1").unwrap().assigned.clone();
    let mut hb = beat("m1", 1, Some(&owned));
    hb.instance_id = Some("i1".into());
    let kept = g.heartbeat(hb, &t, 1).unwrap().assignment.unwrap();
    let mut hb = beat("m1", 1, Some(&kept));
    hb.instance_id = Some("i1".into());
    g.heartbeat(hb, &t, 2).unwrap();
    g.heartbeat(beat("m2", 2, None), &t, 3).unwrap();
    assert_eq!(g.state(), ConsumerGroupState::Stable);
    let epoch = g.group_epoch();
    // m1 restarts: leaves with -2, comes back under a new member id.
    let mut leave = beat("m1", STATIC_LEAVE_EPOCH, None);
    leave.instance_id = Some("i1".into());
    g.heartbeat(leave, &t, 4).unwrap();
    let mut back = join("m1-new");
    back.instance_id = Some("i1".into());
    let a = g.heartbeat(back, &t, 5).unwrap();
    assert_eq!(g.group_epoch(), epoch);
    assert_eq!(a.member_epoch, 2);
    assert_eq!(a.assignment.unwrap(), kept);
    assert!(g.member("m1").is_none());
    // A second member cannot take an instance id that is in use.
    let mut thief = join("m3");
    thief.instance_id = Some("i1".into());
    assert_eq!(
        g.heartbeat(thief, &t, 6).unwrap_err().0,
        ResponseError::UnreleasedInstanceId
    );
}

#[test]
fn new_partitions_and_regex_subscriptions_bump_the_epoch() {
    let mut g = group();
    let mut hb = join("m1");
    hb.subscribed_topic_names = None;
    hb.subscribed_topic_regex = Some("a|b".into());
    let a = g.heartbeat(hb, &catalog(1), 0).unwrap();
    assert_eq!(partitions(a.assignment.as_ref().unwrap()), vec![0]);
    let b = Uuid::from_u128(0xb);
    let mut topics = catalog(3);
    topics.insert(
        "b".into(),
        TopicShape {
            id: b,
            partitions: 1,
        },
    );
    topics.insert(
        "ab".into(),
        TopicShape {
            id: Uuid::from_u128(0xab),
            partitions: 1,
        },
    );
    let a = g.heartbeat(beat("m1", 1, None), &topics, 1).unwrap();
    assert_eq!(a.member_epoch, 2);
    let got = a.assignment.unwrap();
    assert_eq!(partitions(&got), vec![0, 1, 2]);
    assert_eq!(got.get(&b).map(|p| p.len()), Some(1));
    // The regex matches whole names: "ab" is not subscribed.
    assert!(!got.contains_key(&Uuid::from_u128(0xab)));
}
