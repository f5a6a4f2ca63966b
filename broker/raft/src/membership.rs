//! Membership changes on the Raft leader. Adding a voter: join the node as a learner, wait
//! until it has caught up with the leader's log, then promote it to voter (openraft commits the
//! joint configuration and then the new one); any broker can ask, followers forward to the
//! leader. Removing a member: the controller does it for a drained broker.

use std::collections::BTreeSet;
use std::time::Duration;

use chronik_meta::MetaError;
use openraft::error::{ClientWriteError, RaftError as OpenraftError};
use openraft::{BasicNode, ChangeMembers};
use tokio::time::Instant;

use crate::{NodeId, Raft};

/// How a learner counts as caught up: at most this many entries behind the leader.
const CAUGHT_UP_LAG: u64 = 1;

/// What the leader's attempt came to.
#[derive(Debug)]
pub(crate) enum AddVoter {
    Added,
    /// This node is not the leader; the leader it knows of, if any.
    NotLeader(Option<(NodeId, String)>),
    Refused(MetaError),
}

fn not_leader(e: &OpenraftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> Option<AddVoter> {
    match e {
        OpenraftError::APIError(ClientWriteError::ForwardToLeader(f)) => Some(AddVoter::NotLeader(
            f.leader_id
                .zip(f.leader_node.as_ref().map(|n| n.addr.clone())),
        )),
        _ => None,
    }
}

/// On the leader: add `node_id` at `address` as a voter, waiting at most `timeout` for it to
/// catch up as a learner first.
pub(crate) async fn add_voter(
    raft: &Raft,
    node_id: NodeId,
    address: &str,
    timeout: Duration,
) -> AddVoter {
    let metrics = raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    if membership.voter_ids().any(|v| v == node_id) {
        let known = membership
            .get_node(&node_id)
            .map(|n| n.addr.clone())
            .unwrap_or_default();
        return AddVoter::Refused(MetaError::AlreadyMember(format!(
            "node {node_id} is already a voter (at {known})"
        )));
    }
    if let Err(e) = raft
        .add_learner(node_id, BasicNode::new(address), false)
        .await
    {
        return not_leader(&e)
            .unwrap_or_else(|| AddVoter::Refused(MetaError::Unavailable(e.to_string())));
    }
    tracing::info!(node_id, %address, "added a learner; waiting for it to catch up");
    let deadline = Instant::now() + timeout;
    let mut rx = raft.metrics();
    loop {
        let caught_up = {
            let m = rx.borrow_and_update();
            let last = m.last_log_index.unwrap_or(0);
            m.replication
                .as_ref()
                .and_then(|r| r.get(&node_id))
                .and_then(|matched| *matched)
                .is_some_and(|matched| matched.index + CAUGHT_UP_LAG >= last)
        };
        if caught_up {
            break;
        }
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            return AddVoter::Refused(MetaError::Unavailable(format!(
                "node {node_id} at {address} joined as a learner but did not catch up within {timeout:?}; \
                 is it running with CHRONIK_NODE_ID={node_id} and reachable? Retry to promote it"
            )));
        }
    }
    let change = ChangeMembers::AddVoterIds(BTreeSet::from([node_id]));
    match raft.change_membership(change, false).await {
        Ok(_) => {
            tracing::info!(node_id, "promoted to voter");
            AddVoter::Added
        }
        Err(e) => not_leader(&e)
            .unwrap_or_else(|| AddVoter::Refused(MetaError::Unavailable(e.to_string()))),
    }
}

/// On the leader: take `node_id` out of the membership (a voter or a learner). A leader that
/// removes itself steps down once the change is committed (openraft), and the next leader
/// carries on.
pub(crate) async fn remove_member(raft: &Raft, node_id: NodeId) -> Result<(), String> {
    let membership = raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .clone();
    let ids = BTreeSet::from([node_id]);
    let change = if membership.voter_ids().any(|v| v == node_id) {
        ChangeMembers::RemoveVoters(ids)
    } else if membership.get_node(&node_id).is_some() {
        ChangeMembers::RemoveNodes(ids)
    } else {
        return Ok(());
    };
    raft.change_membership(change, false)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}
