//! The group coordinator over a real socket: what a consumer-group client sees, including after
//! the broker restarts on the same data directory.

use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

mod support;

use support::{Client, TestBroker};

async fn start(dir: &std::path::Path) -> TestBroker {
    TestBroker::start(dir).await
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn join_request(member_id: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member_id))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(
                b"\x00\x00\x00\x00\x00\x01\x00\x01t",
            ))])
}

fn commit_request(member: &str, generation: i32, offset: i64) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s("t")))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)
                .with_committed_metadata(Some(s("meta")))])])
}

async fn fetch_offset(c: &mut Client) -> (i64, String) {
    let resp: OffsetFetchResponse = c
        .call(
            ApiKey::OffsetFetch,
            7,
            &OffsetFetchRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_partition_indexes(vec![0])])),
        )
        .await;
    assert_eq!(resp.error_code, 0);
    let p = &resp.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    (
        p.committed_offset,
        p.metadata
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default(),
    )
}

#[tokio::test]
async fn a_member_joins_syncs_commits_and_its_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path()).await;
    let mut c = Client::connect(&b).await;
    let created: CreateTopicsResponse = c
        .call(
            ApiKey::CreateTopics,
            5,
            &CreateTopicsRequest::default()
                .with_topics(vec![CreatableTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_num_partitions(1)
                    .with_replication_factor(1)])
                .with_timeout_ms(5000),
        )
        .await;
    assert_eq!(created.topics[0].error_code, 0);

    let found: FindCoordinatorResponse = c
        .call(
            ApiKey::FindCoordinator,
            4,
            &FindCoordinatorRequest::default()
                .with_key_type(0)
                .with_coordinator_keys(vec![s("g"), s("other")]),
        )
        .await;
    assert_eq!(found.coordinators.len(), 2);
    for coordinator in &found.coordinators {
        assert_eq!(coordinator.error_code, 0);
        assert_eq!(coordinator.node_id.0, 1);
        assert_eq!(coordinator.port, b.addr.port() as i32);
    }

    // KIP-394: the first join only hands out the member id.
    let first: JoinGroupResponse = c.call(ApiKey::JoinGroup, 5, &join_request("")).await;
    assert_eq!(first.error_code, 79, "MEMBER_ID_REQUIRED");
    let member = first.member_id.to_string();
    assert!(!member.is_empty());
    let joined: JoinGroupResponse = c.call(ApiKey::JoinGroup, 5, &join_request(&member)).await;
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.leader.to_string(), member);
    assert_eq!(joined.members.len(), 1);

    let synced: SyncGroupResponse = c
        .call(
            ApiKey::SyncGroup,
            3,
            &SyncGroupRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_generation_id(1)
                .with_member_id(s(&member))
                .with_assignments(vec![SyncGroupRequestAssignment::default()
                    .with_member_id(s(&member))
                    .with_assignment(Bytes::from_static(b"assignment"))]),
        )
        .await;
    assert_eq!(synced.error_code, 0);
    assert_eq!(&synced.assignment[..], b"assignment");

    let beat: HeartbeatResponse = c
        .call(
            ApiKey::Heartbeat,
            3,
            &HeartbeatRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_generation_id(0)
                .with_member_id(s(&member)),
        )
        .await;
    assert_eq!(
        beat.error_code, 22,
        "ILLEGAL_GENERATION for a stale generation"
    );

    let stale: OffsetCommitResponse = c
        .call(ApiKey::OffsetCommit, 7, &commit_request(&member, 0, 5))
        .await;
    assert_eq!(stale.topics[0].partitions[0].error_code, 22);
    let committed: OffsetCommitResponse = c
        .call(ApiKey::OffsetCommit, 7, &commit_request(&member, 1, 42))
        .await;
    assert_eq!(committed.topics[0].partitions[0].error_code, 0);
    assert_eq!(fetch_offset(&mut c).await, (42, "meta".to_string()));

    let described: DescribeGroupsResponse = c
        .call(
            ApiKey::DescribeGroups,
            4,
            &DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]),
        )
        .await;
    assert_eq!(described.groups[0].group_state.to_string(), "Stable");
    assert_eq!(described.groups[0].protocol_data.to_string(), "range");

    drop(c);
    b.stop().await;

    // A new broker on the same data directory replays __consumer_offsets.
    let b = start(dir.path()).await;
    let mut c = Client::connect(&b).await;
    assert_eq!(fetch_offset(&mut c).await, (42, "meta".to_string()));
    let beat: HeartbeatResponse = c
        .call(
            ApiKey::Heartbeat,
            3,
            &HeartbeatRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_generation_id(1)
                .with_member_id(s(&member)),
        )
        .await;
    assert_eq!(
        beat.error_code, 0,
        "the member and its generation were restored"
    );

    let left: LeaveGroupResponse = c
        .call(
            ApiKey::LeaveGroup,
            3,
            &LeaveGroupRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_members(vec![
                    leave_group_request::MemberIdentity::default().with_member_id(s(&member))
                ]),
        )
        .await;
    assert_eq!(left.error_code, 0);
    assert_eq!(left.members[0].error_code, 0);

    let deleted: DeleteGroupsResponse = c
        .call(
            ApiKey::DeleteGroups,
            2,
            &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("g"))]),
        )
        .await;
    assert_eq!(deleted.results[0].error_code, 0);
    drop(c);
    b.stop().await;

    // Deletion is durable too: tombstones win on replay.
    let b = start(dir.path()).await;
    let mut c = Client::connect(&b).await;
    assert_eq!(fetch_offset(&mut c).await.0, -1);
    let listed: ListGroupsResponse = c
        .call(ApiKey::ListGroups, 4, &ListGroupsRequest::default())
        .await;
    assert!(listed.groups.is_empty(), "deleted group listed: {listed:?}");
}

#[tokio::test]
async fn a_join_waits_for_the_rebalance_while_the_group_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path()).await;
    let mut a = Client::connect(&b).await;
    let first: JoinGroupResponse = a.call(ApiKey::JoinGroup, 5, &join_request("")).await;
    let m1 = first.member_id.to_string();
    let joined: JoinGroupResponse = a.call(ApiKey::JoinGroup, 5, &join_request(&m1)).await;
    assert_eq!(joined.generation_id, 1);

    // A second member starts a rebalance; its join waits for the first member to rejoin,
    // while the coordinator keeps answering the first member's requests.
    let mut second = Client::connect(&b).await;
    let r: JoinGroupResponse = second.call(ApiKey::JoinGroup, 5, &join_request("")).await;
    let m2 = r.member_id.to_string();
    let waiting = tokio::spawn(async move {
        let resp: JoinGroupResponse = second.call(ApiKey::JoinGroup, 5, &join_request(&m2)).await;
        resp
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(!waiting.is_finished(), "the join waits for the rebalance");
    let beat: HeartbeatResponse = a
        .call(
            ApiKey::Heartbeat,
            3,
            &HeartbeatRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_generation_id(1)
                .with_member_id(s(&m1)),
        )
        .await;
    assert_eq!(
        beat.error_code, 27,
        "REBALANCE_IN_PROGRESS tells the member to rejoin"
    );
    let rejoined: JoinGroupResponse = a.call(ApiKey::JoinGroup, 5, &join_request(&m1)).await;
    assert_eq!(rejoined.generation_id, 2);
    assert_eq!(rejoined.members.len(), 2);
    let other = waiting.await.unwrap();
    assert_eq!(other.error_code, 0);
    assert_eq!(other.generation_id, 2);
}
