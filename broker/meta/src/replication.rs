//! Replication decisions, as pure functions (Kafka's ISR model): who leads a partition, when a
//! follower leaves or (re)joins the in-sync replica set, and where the high watermark stands.
//! The runtimes that fetch, track follower progress and commit ISR changes through Raft call
//! these; they own no state of their own here.

use std::collections::BTreeMap;

use crate::{ClusterState, Command};

/// The replica that leads after a failover: the first replica, in assignment order (so the
/// preferred leader wins when it is eligible), that is both in the ISR and alive. Only ISR
/// members are eligible (unclean leader election is off): anything else may lack
/// acknowledged records. `None` leaves the partition offline until an ISR member returns.
pub fn elect_leader(replicas: &[i32], isr: &[i32], alive: impl Fn(i32) -> bool) -> Option<i32> {
    replicas
        .iter()
        .copied()
        .find(|r| isr.contains(r) && alive(*r))
}

/// The ISR once `broker` is fenced (dead). Kafka never empties the ISR: when the last member
/// dies it stays recorded (the partition goes offline with it as the only eligible leader),
/// so a record acknowledged by that member alone is never lost to an unclean election.
pub fn isr_without(isr: &[i32], broker: i32) -> Vec<i32> {
    if isr == [broker] {
        return isr.to_vec();
    }
    isr.iter().copied().filter(|r| *r != broker).collect()
}

/// What the leader knows about one follower's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerProgress {
    /// The follower's log end offset: where its last fetch asked to read from; -1 before its
    /// first fetch. Catching up is judged by it, as in Kafka.
    pub log_end_offset: i64,
    /// How far the follower's log is durable, as it last reported (with every fetch, and on
    /// its own once an append it fetched is synced); -1 before its first report. Only this
    /// counts for the high watermark and for rejoining the ISR: a follower fetches the next
    /// records while the last ones are still being synced, so its log end runs ahead of it.
    pub durable_offset: i64,
    /// When the follower was last caught up with the leader (ms).
    pub last_caught_up_ms: i64,
    /// The leader's log end offset when the follower last fetched, and when that was.
    pub last_fetch_leader_leo: i64,
    pub last_fetch_ms: i64,
}

impl FollowerProgress {
    /// A follower the leader has not heard from yet, counted as caught up at `now_ms` so an
    /// ISR member gets a full lag window after a leader change before it is dropped.
    pub fn new(now_ms: i64) -> Self {
        FollowerProgress {
            log_end_offset: -1,
            durable_offset: -1,
            last_caught_up_ms: now_ms,
            last_fetch_leader_leo: -1,
            last_fetch_ms: now_ms,
        }
    }

    /// Record a fetch at `fetch_offset` while the leader's log ends at `leader_leo`. The
    /// follower is caught up when it asked for the leader's end, or for at least the end the
    /// leader had at the follower's previous fetch (then it was caught up as of that fetch):
    /// Kafka's rule, which keeps a follower of a busy partition in sync although the leader's
    /// end moves between every two fetches. `durable_offset` is what the fetch reports as
    /// synced.
    pub fn on_fetch(
        &mut self,
        fetch_offset: i64,
        durable_offset: i64,
        leader_leo: i64,
        now_ms: i64,
    ) {
        if fetch_offset >= leader_leo {
            self.last_caught_up_ms = now_ms;
        } else if self.last_fetch_leader_leo >= 0 && fetch_offset >= self.last_fetch_leader_leo {
            self.last_caught_up_ms = self.last_caught_up_ms.max(self.last_fetch_ms);
        }
        self.log_end_offset = fetch_offset;
        self.on_durable(durable_offset);
        self.last_fetch_leader_leo = leader_leo;
        self.last_fetch_ms = now_ms;
    }

    /// The follower reports its log durable up to `durable_offset`. Within one leadership
    /// (a new leader starts from fresh progress) what a follower has synced only grows, but
    /// a fetch carries the durable end as of when it was sent and may be served after a
    /// newer report: the larger one stands.
    pub fn on_durable(&mut self, durable_offset: i64) {
        self.durable_offset = self.durable_offset.max(durable_offset);
    }
}

/// ISR members (other than the leader) not caught up for longer than `lag_max_ms`
/// (replica.lag.time.max.ms): the leader proposes the ISR without them.
pub fn isr_to_shrink(
    leader: i32,
    isr: &[i32],
    followers: &BTreeMap<i32, FollowerProgress>,
    now_ms: i64,
    lag_max_ms: i64,
) -> Vec<i32> {
    isr.iter()
        .copied()
        .filter(|r| *r != leader)
        .filter(|r| {
            followers
                .get(r)
                .is_none_or(|f| now_ms - f.last_caught_up_ms > lag_max_ms)
        })
        .collect()
}

/// Replicas outside the ISR that may rejoin: their durable log reaches the high watermark and
/// the start of the leader's current epoch (so they hold nothing the new leader did not write).
pub fn isr_to_expand(
    replicas: &[i32],
    isr: &[i32],
    followers: &BTreeMap<i32, FollowerProgress>,
    high_watermark: i64,
    leader_epoch_start: i64,
) -> Vec<i32> {
    replicas
        .iter()
        .copied()
        .filter(|r| !isr.contains(r))
        .filter(|r| {
            followers.get(r).is_some_and(|f| {
                f.durable_offset >= high_watermark && f.durable_offset >= leader_epoch_start
            })
        })
        .collect()
}

/// The high watermark: the smallest durable log end over the ISR (the leader's own included),
/// never below the current one (a follower that truncated does not pull it back). An ISR
/// member that has not fetched yet holds it where it is.
pub fn high_watermark(
    leader: i32,
    leader_leo: i64,
    isr: &[i32],
    followers: &BTreeMap<i32, FollowerProgress>,
    current: i64,
) -> i64 {
    let mut hw = leader_leo;
    for r in isr.iter().filter(|r| **r != leader) {
        match followers.get(r) {
            Some(f) if f.durable_offset >= 0 => hw = hw.min(f.durable_offset),
            _ => return current,
        }
    }
    hw.max(current).min(leader_leo)
}

/// When the controller last heard from `broker`: its last heartbeat, but not before `since_ms`
/// (when this controller took over), so a new controller counts every broker from then.
fn last_heard(last_seen: &BTreeMap<i32, i64>, broker: i32, since_ms: i64) -> i64 {
    last_seen
        .get(&broker)
        .copied()
        .unwrap_or(i64::MIN)
        .max(since_ms)
}

/// Live brokers the controller probes to learn whether their process is gone (see `refused`
/// in [`liveness_changes`]): those not heard from for longer than `silent_ms`, and those
/// another broker reported (`suspects`, broker -> when reported) within the last `silent_ms`
/// because their cluster port refused its replica fetch. A follower's fetch notices a crashed
/// leader at once, long before its heartbeats are missed.
pub fn brokers_to_probe(
    state: &ClusterState,
    last_seen: &BTreeMap<i32, i64>,
    suspects: &BTreeMap<i32, i64>,
    since_ms: i64,
    now_ms: i64,
    silent_ms: i64,
) -> Vec<i32> {
    state
        .live_brokers()
        .filter(|b| {
            now_ms - last_heard(last_seen, *b, since_ms) > silent_ms
                || suspects.get(b).is_some_and(|t| now_ms - t <= silent_ms)
        })
        .collect()
}

/// The controller's liveness decisions: fence a registered broker whose last heartbeat
/// (`last_seen`, ms) is older than `lease_ms`, unfence a fenced one heard from within it. A
/// broker not heard from at all counts as seen at `since_ms` (when this controller took
/// over), so a new controller gives every broker one lease before fencing it.
///
/// `refused_at` holds when the controller's probe last found a broker's cluster port refusing
/// connections. Refused since its last heartbeat, nothing listens there: the process is gone
/// (a crash) and waiting out the lease would only keep its partitions leaderless, so it is
/// fenced at once and stays fenced until a heartbeat newer than the refusal arrives. (A broker
/// cut off by the network does not refuse, it times out, and gets the full lease.) A fenced
/// broker is unfenced only on a heartbeat within the last `fresh_ms`: one from before a crash
/// must not bring it back.
pub fn liveness_changes(
    state: &ClusterState,
    last_seen: &BTreeMap<i32, i64>,
    refused_at: &BTreeMap<i32, i64>,
    since_ms: i64,
    now_ms: i64,
    lease_ms: i64,
    fresh_ms: i64,
) -> Vec<Command> {
    state
        .brokers
        .keys()
        .filter_map(|b| {
            let heard = last_seen.get(b).copied();
            let last = last_heard(last_seen, *b, since_ms);
            let gone = refused_at.get(b).is_some_and(|r| *r >= last);
            let alive = now_ms - last <= lease_ms && !gone;
            let fenced = state.fenced.contains(b);
            if !alive && !fenced {
                Some(Command::FenceBroker { node_id: *b })
            } else if alive && fenced && heard.is_some_and(|h| now_ms - h <= fresh_ms) {
                Some(Command::UnfenceBroker { node_id: *b })
            } else {
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every subset of `items`, as vectors in the original order.
    fn subsets(items: &[i32]) -> Vec<Vec<i32>> {
        (0..1u32 << items.len())
            .map(|mask| {
                items
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, r)| *r)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn brokers_are_fenced_after_a_silent_lease_and_unfenced_when_heard() {
        let mut state = ClusterState::default();
        for id in 1..=3 {
            state
                .apply(
                    1,
                    &Command::RegisterBroker(crate::BrokerInfo {
                        node_id: id,
                        host: "h".into(),
                        port: 1,
                        rack: None,
                    }),
                )
                .unwrap();
        }
        let seen = BTreeMap::from([(1, 9_000), (2, 5_000)]);
        let no_suspects = BTreeMap::new();
        // Probed once silent for longer than 750 ms; after a take-over, counted from then.
        assert_eq!(
            brokers_to_probe(&state, &seen, &no_suspects, 0, 9_600, 750),
            vec![2, 3]
        );
        assert_eq!(
            brokers_to_probe(&state, &seen, &no_suspects, 9_500, 10_000, 750),
            vec![] as Vec<i32>
        );
        // A recent report gets a broker probed at once, heard from or not; an old one does not.
        let suspects = BTreeMap::from([(1, 9_900), (3, 9_000)]);
        assert_eq!(
            brokers_to_probe(&state, &seen, &suspects, 9_500, 10_000, 750),
            vec![1]
        );
        // Within the grace after take-over nobody is fenced, heard from or not...
        let none = BTreeMap::new();
        assert!(liveness_changes(&state, &seen, &none, 8_000, 10_000, 3_000, 750).is_empty());
        // ...unless its port refused connections since: the process is gone.
        assert_eq!(
            liveness_changes(
                &state,
                &seen,
                &BTreeMap::from([(3, 9_990)]),
                8_000,
                10_000,
                3_000,
                750
            ),
            vec![Command::FenceBroker { node_id: 3 }]
        );
        // A refusal older than the last heartbeat is history (it restarted).
        assert!(liveness_changes(
            &state,
            &seen,
            &BTreeMap::from([(1, 8_500)]),
            8_000,
            10_000,
            3_000,
            750
        )
        .is_empty());
        assert_eq!(
            liveness_changes(&state, &seen, &none, 0, 10_000, 3_000, 750),
            vec![
                Command::FenceBroker { node_id: 2 },
                Command::FenceBroker { node_id: 3 }
            ]
        );
        state
            .apply(2, &Command::FenceBroker { node_id: 2 })
            .unwrap();
        state
            .apply(3, &Command::FenceBroker { node_id: 3 })
            .unwrap();
        let seen = BTreeMap::from([(1, 9_000), (2, 9_500)]);
        assert_eq!(
            liveness_changes(&state, &seen, &none, 0, 10_000, 3_000, 750),
            vec![Command::UnfenceBroker { node_id: 2 }]
        );
        // Fenced on a refusal right after a heartbeat: that heartbeat is fresh, but older than
        // the refusal, so it does not bring the broker back; a newer one does.
        let refused = BTreeMap::from([(2, 9_600)]);
        assert!(
            liveness_changes(&state, &seen, &refused, 0, 10_000, 3_000, 750).is_empty(),
            "not unfenced on a heartbeat from before the refusal"
        );
        let seen = BTreeMap::from([(1, 9_900), (2, 9_700)]);
        assert_eq!(
            liveness_changes(&state, &seen, &refused, 0, 10_000, 3_000, 750),
            vec![Command::UnfenceBroker { node_id: 2 }]
        );
        // A heartbeat within the lease but not fresh does not bring it back either.
        let seen = BTreeMap::from([(1, 9_900), (2, 9_000)]);
        assert!(liveness_changes(&state, &seen, &none, 0, 10_000, 3_000, 750).is_empty());
    }

    #[test]
    fn election_picks_only_live_isr_members_in_replica_order() {
        let replicas = [3, 1, 2, 4];
        for isr in subsets(&replicas) {
            for alive in subsets(&replicas) {
                let leader = elect_leader(&replicas, &isr, |r| alive.contains(&r));
                let eligible: Vec<i32> = replicas
                    .iter()
                    .copied()
                    .filter(|r| isr.contains(r) && alive.contains(r))
                    .collect();
                assert_eq!(
                    leader,
                    eligible.first().copied(),
                    "isr {isr:?} alive {alive:?}"
                );
            }
        }
    }

    #[test]
    fn fencing_never_empties_the_isr() {
        let replicas = [1, 2, 3];
        for isr in subsets(&replicas).into_iter().filter(|s| !s.is_empty()) {
            for dead in replicas {
                let next = isr_without(&isr, dead);
                assert!(!next.is_empty());
                if isr.len() > 1 {
                    assert!(!next.contains(&dead));
                    assert_eq!(next.len(), isr.len() - usize::from(isr.contains(&dead)));
                } else {
                    assert_eq!(next, isr);
                }
            }
        }
    }

    #[test]
    fn a_follower_is_caught_up_at_the_leaders_end_or_its_previous_end() {
        let mut f = FollowerProgress::new(0);
        f.on_fetch(0, 0, 10, 100);
        assert_eq!(f.last_caught_up_ms, 0, "behind, and no previous fetch");
        f.on_fetch(10, 0, 20, 200);
        assert_eq!(
            f.last_caught_up_ms, 100,
            "reached the end of its previous fetch"
        );
        f.on_fetch(15, 10, 30, 300);
        assert_eq!(f.last_caught_up_ms, 100, "fell behind");
        f.on_fetch(30, 15, 30, 400);
        assert_eq!(f.last_caught_up_ms, 400, "caught up by what it fetched");
        assert_eq!((f.log_end_offset, f.durable_offset), (30, 15));
        f.on_durable(30);
        assert_eq!((f.log_end_offset, f.durable_offset), (30, 30));
        f.on_fetch(30, 20, 30, 500);
        assert_eq!(
            f.durable_offset, 30,
            "an older report served late does not go back"
        );
    }

    #[test]
    fn lagging_isr_members_shrink_and_caught_up_replicas_expand() {
        let mut followers = BTreeMap::new();
        let mut slow = FollowerProgress::new(0);
        slow.on_fetch(5, 5, 10, 0);
        let mut fast = FollowerProgress::new(0);
        fast.on_fetch(10, 10, 10, 20_000);
        followers.insert(2, slow);
        followers.insert(3, fast);
        // Replica 4 never fetched: it counts as lagging too.
        assert_eq!(
            isr_to_shrink(1, &[1, 2, 3, 4], &followers, 20_000, 10_000),
            vec![2, 4]
        );
        assert!(isr_to_shrink(1, &[1, 2, 3], &followers, 5_000, 10_000).is_empty());
        assert_eq!(isr_to_expand(&[1, 2, 3], &[1], &followers, 10, 0), vec![3]);
        assert_eq!(
            isr_to_expand(&[1, 2, 3], &[1], &followers, 5, 0),
            vec![2, 3]
        );
        // Below the start of the leader's epoch a replica may still hold a divergent tail.
        assert_eq!(isr_to_expand(&[1, 2, 3], &[1], &followers, 5, 8), vec![3]);
        // Fetched is not enough: what rejoins must be durable.
        let mut syncing = FollowerProgress::new(0);
        syncing.on_fetch(10, 4, 10, 20_000);
        followers.insert(2, syncing);
        assert_eq!(isr_to_expand(&[1, 2, 3], &[1], &followers, 5, 0), vec![3]);
    }

    #[test]
    fn high_watermark_is_the_minimum_isr_end_and_never_goes_back() {
        // Fetched further than durable: only the durable end counts.
        let follower = |durable| FollowerProgress {
            log_end_offset: 100,
            durable_offset: durable,
            ..FollowerProgress::new(0)
        };
        // Exhaustive over small ends: hw = max(current, min over ISR) and <= leader end.
        for leader_leo in 0..6 {
            for a in -1..6 {
                for b in -1..6 {
                    for current in 0..=leader_leo {
                        let followers = BTreeMap::from([(2, follower(a)), (3, follower(b))]);
                        let hw = high_watermark(1, leader_leo, &[1, 2, 3], &followers, current);
                        let expected = if a < 0 || b < 0 {
                            current
                        } else {
                            leader_leo.min(a).min(b).max(current).min(leader_leo)
                        };
                        assert_eq!(hw, expected);
                        assert!(hw >= current && hw <= leader_leo);
                        // Followers outside the ISR do not count.
                        assert_eq!(
                            high_watermark(1, leader_leo, &[1], &followers, current),
                            leader_leo
                        );
                    }
                }
            }
        }
    }
}
