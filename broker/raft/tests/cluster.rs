//! Raft nodes in one process talking over real gRPC on loopback: bootstrap, forwarding from
//! followers, read-after-write, leader loss and restart from disk.

use std::collections::BTreeMap;
use std::time::Duration;

use chronik_meta::{BrokerInfo, Command, MetaError, MetadataStore};
use chronik_raft::{RaftNode, RaftNodeConfig, RaftTimings};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn timings() -> RaftTimings {
    RaftTimings {
        heartbeat_interval_ms: 100,
        election_timeout_min_ms: 400,
        election_timeout_max_ms: 800,
        snapshot_every: 20,
        propose_timeout: Duration::from_secs(10),
        liveness: Default::default(),
    }
}

fn config(id: u64, dir: &std::path::Path, voters: &BTreeMap<u64, String>) -> RaftNodeConfig {
    RaftNodeConfig {
        node_id: id,
        dir: dir.join(format!("n{id}")),
        listen: voters[&id].clone(),
        initial_voters: voters.clone(),
        timings: timings(),
    }
}

fn broker(id: i32) -> Command {
    Command::RegisterBroker(BrokerInfo {
        node_id: id,
        host: "127.0.0.1".into(),
        port: 9000 + id,
        rack: None,
    })
}

fn topic(name: &str) -> Command {
    Command::CreateTopic {
        name: name.into(),
        id: uuid::Uuid::new_v4(),
        assignments: vec![vec![1]],
        configs: BTreeMap::new(),
    }
}

/// The leader every node agrees on. Each voter calls `initialize` at bootstrap, so the first
/// elections compete and a node can still call itself leader of a term the others have left;
/// waiting for agreement avoids picking that stale leader.
async fn leader_of(nodes: &[&RaftNode]) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let views: Vec<_> = nodes.iter().map(|n| n.store().quorum()).collect();
        let leaders: Vec<Option<i32>> = views
            .iter()
            .map(|q| q.as_ref().and_then(|q| q.leader_id))
            .collect();
        if let Some(Some(id)) = leaders.first() {
            let agreed = leaders.iter().all(|l| *l == Some(*id));
            let claims = views
                .iter()
                .flatten()
                .any(|q| q.node_id == *id && q.role == "leader");
            if agreed && claims {
                return *id as u64;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_voter_commits_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let voters = BTreeMap::from([(1u64, format!("127.0.0.1:{}", free_port()))]);
    let node = RaftNode::start(config(1, dir.path(), &voters))
        .await
        .unwrap();
    node.wait_joined().await;
    let store = node.store();
    store.propose(broker(1)).await.unwrap();
    store.propose(topic("a")).await.unwrap();
    assert_eq!(
        store.propose(topic("a")).await,
        Err(MetaError::TopicAlreadyExists("a".into()))
    );
    // Enough commands to snapshot and purge the log at least once.
    for i in 0..50 {
        store.propose(topic(&format!("t{i}"))).await.unwrap();
    }
    node.shutdown().await;
    assert!(dir.path().join("n1/snapshot.json").exists());

    let node = RaftNode::start(config(1, dir.path(), &voters))
        .await
        .unwrap();
    node.wait_joined().await;
    assert!(node.catch_up(Duration::from_secs(5)).await);
    let state = node.store().state();
    assert_eq!(state.topics.len(), 51);
    assert!(state.brokers.contains_key(&1));
    node.store().propose(topic("b")).await.unwrap();
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_forward_fail_over_and_recover() {
    let dir = tempfile::tempdir().unwrap();
    let voters: BTreeMap<u64, String> = (1..=3)
        .map(|id| (id, format!("127.0.0.1:{}", free_port())))
        .collect();
    let mut nodes: BTreeMap<u64, RaftNode> = BTreeMap::new();
    for id in 1..=3 {
        nodes.insert(
            id,
            RaftNode::start(config(id, dir.path(), &voters))
                .await
                .unwrap(),
        );
    }
    for n in nodes.values() {
        n.wait_joined().await;
    }
    let leader = leader_of(&nodes.values().collect::<Vec<_>>()).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();

    // A follower forwards to the leader and answers only once it has applied the command.
    for id in 1..=3 {
        nodes[&follower].store().propose(broker(id)).await.unwrap();
    }
    nodes[&follower]
        .store()
        .propose(topic("orders"))
        .await
        .unwrap();
    assert!(nodes[&follower]
        .store()
        .state()
        .topics
        .contains_key("orders"));
    // The leader's verdict on a refused command reaches the follower's caller.
    assert_eq!(
        nodes[&follower].store().propose(topic("orders")).await,
        Err(MetaError::TopicAlreadyExists("orders".into()))
    );
    // A command refused because of an entry this follower has not applied yet: once the
    // refusal arrives, the follower's state shows that entry too.
    let other = (1..=3).find(|id| *id != leader && *id != follower).unwrap();
    for i in 0..20 {
        let name = format!("race-{i}");
        nodes[&leader].store().propose(topic(&name)).await.unwrap();
        assert_eq!(
            nodes[&other].store().propose(topic(&name)).await,
            Err(MetaError::TopicAlreadyExists(name.clone()))
        );
        assert!(nodes[&other].store().state().topics.contains_key(&name));
    }
    for n in nodes.values() {
        assert!(n.catch_up(Duration::from_secs(5)).await);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while nodes
        .values()
        .any(|n| !n.store().state().topics.contains_key("orders"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not replicated everywhere"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The leader reports every voter with its lag; followers know the leader.
    let q = nodes[&leader].store().quorum().unwrap();
    assert_eq!(q.leader_id, Some(leader as i32));
    assert_eq!(q.members.len(), 3);
    assert!(
        q.members.iter().all(|m| m.voter && m.lag.is_some()),
        "{q:?}"
    );
    let q = nodes[&follower].store().quorum().unwrap();
    assert_eq!(
        (q.role.as_str(), q.leader_id),
        ("follower", Some(leader as i32))
    );

    // Lose the leader: the other two elect a new one and keep committing.
    nodes.remove(&leader).unwrap().shutdown().await;
    let rest: Vec<&RaftNode> = nodes.values().collect();
    let new_leader = leader_of(&rest).await;
    assert_ne!(new_leader, leader);
    rest[0]
        .store()
        .propose(topic("after-failover"))
        .await
        .unwrap();
    rest[1]
        .store()
        .propose(topic("after-failover-2"))
        .await
        .unwrap();

    // The old leader comes back from its disk and catches up.
    let back = RaftNode::start(config(leader, dir.path(), &voters))
        .await
        .unwrap();
    back.wait_joined().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !back.store().state().topics.contains_key("after-failover-2") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "restarted node did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    back.store()
        .propose(topic("from-returned-node"))
        .await
        .unwrap();
    nodes.insert(leader, back);
    for (_, n) in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposals_without_a_quorum_fail_as_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let voters: BTreeMap<u64, String> = (1..=3)
        .map(|id| (id, format!("127.0.0.1:{}", free_port())))
        .collect();
    let mut cfg = config(1, dir.path(), &voters);
    cfg.timings.propose_timeout = Duration::from_secs(2);
    let node = RaftNode::start(cfg).await.unwrap();
    let started = std::time::Instant::now();
    let err = node.store().propose(broker(1)).await.unwrap_err();
    assert!(matches!(err, MetaError::Unavailable(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_outside_the_voters_waits_then_joins_when_added() {
    let dir = tempfile::tempdir().unwrap();
    let voters: BTreeMap<u64, String> = (1..=3)
        .map(|id| (id, format!("127.0.0.1:{}", free_port())))
        .collect();
    let mut nodes = Vec::new();
    for id in 1..=3 {
        nodes.push(
            RaftNode::start(config(id, dir.path(), &voters))
                .await
                .unwrap(),
        );
    }
    for n in &nodes {
        n.wait_joined().await;
    }
    nodes[0].store().propose(broker(1)).await.unwrap();
    let addr4 = format!("127.0.0.1:{}", free_port());
    let mut cfg4 = config(1, dir.path(), &voters);
    cfg4.node_id = 4;
    cfg4.dir = dir.path().join("n4");
    cfg4.listen = addr4.clone();
    let newcomer = RaftNode::start(cfg4).await.unwrap();
    // Not a member: joining does not complete on its own.
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), newcomer.wait_joined())
            .await
            .is_err()
    );

    let leader = leader_of(&nodes.iter().collect::<Vec<_>>()).await;
    let follower = nodes
        .iter()
        .find(|n| n.store().quorum().unwrap().node_id as u64 != leader)
        .unwrap();
    follower.store().add_voter(4, addr4.clone()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), newcomer.wait_joined())
        .await
        .expect("added node joins");
    assert!(newcomer.store().state().brokers.contains_key(&1));
    newcomer.store().propose(broker(4)).await.unwrap();
    let q = nodes[0].store().quorum().unwrap();
    assert_eq!(q.members.iter().filter(|m| m.voter).count(), 4, "{q:?}");
    assert_eq!(
        follower.store().add_voter(4, addr4.clone()).await,
        Err(MetaError::AlreadyMember(format!(
            "node 4 is already a voter (at {addr4})"
        )))
    );
    newcomer.shutdown().await;
    for n in nodes {
        n.shutdown().await;
    }
}
