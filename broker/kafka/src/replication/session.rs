//! The leader's end of a replication session: one ordered stream of a follower's messages in,
//! one stream of fetch answers out. Durable-progress reports are taken as they arrive, even
//! while a fetch is held open waiting for new records; fetches are served one at a time, in
//! order. The session ends when the follower's stream does or the broker is gone.

use std::sync::{Arc, Weak};

use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::mpsc;

use super::{FetchPartition, FetchedPartition, FollowerMessage};
use crate::Broker;

/// A fetch waiting for its turn; a follower sends the next only after the answer, so one is
/// enough.
type QueuedFetch = (i32, std::time::Duration, Vec<FetchPartition>);

impl Broker {
    /// Serve a follower's replication session: the answers to its fetches, in order.
    pub fn serve_replica_session(
        self: &Arc<Self>,
        messages: BoxStream<'static, FollowerMessage>,
    ) -> BoxStream<'static, Vec<FetchedPartition>> {
        let (fetch_tx, fetch_rx) = mpsc::channel::<QueuedFetch>(1);
        let (answer_tx, answer_rx) = mpsc::channel(1);
        // Weak: an open session must not keep a stopped broker serving.
        tokio::spawn(read_messages(Arc::downgrade(self), messages, fetch_tx));
        tokio::spawn(serve_fetches(Arc::downgrade(self), fetch_rx, answer_tx));
        stream::unfold(answer_rx, |mut rx| async move {
            rx.recv().await.map(|answer| (answer, rx))
        })
        .boxed()
    }
}

async fn read_messages(
    broker: Weak<Broker>,
    mut messages: BoxStream<'static, FollowerMessage>,
    fetches: mpsc::Sender<QueuedFetch>,
) {
    while let Some(message) = messages.next().await {
        let Some(broker) = broker.upgrade() else {
            return;
        };
        match message {
            FollowerMessage::Durable {
                replica_id,
                partitions,
            } => broker.record_durable_offsets(replica_id, &partitions),
            FollowerMessage::Fetch {
                replica_id,
                max_wait,
                partitions,
            } => {
                drop(broker);
                if fetches
                    .send((replica_id, max_wait, partitions))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

async fn serve_fetches(
    broker: Weak<Broker>,
    mut fetches: mpsc::Receiver<QueuedFetch>,
    answers: mpsc::Sender<Vec<FetchedPartition>>,
) {
    while let Some((replica_id, max_wait, partitions)) = fetches.recv().await {
        let Some(broker) = broker.upgrade() else {
            return;
        };
        let answer = broker
            .serve_replica_fetch(replica_id, max_wait, partitions)
            .await;
        drop(broker);
        if answers.send(answer).await.is_err() {
            return;
        }
    }
}
