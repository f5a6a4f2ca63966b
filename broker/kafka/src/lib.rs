//! The Kafka side of the broker: one handler per Kafka API (in `handlers/`), the registry that
//! dispatches to them and also produces the ApiVersions answer, and connection handling.
//!
//! Reading top-down, the produce path is: [`listener::serve`] accepts a socket,
//! [`connection`] reads frames and decodes requests (chronik-protocol), [`registry`] routes to
//! `handlers/produce.rs`, which appends to the partition's log (chronik-log) and waits for it to
//! be durable before the response is written back in request order.

mod connection;
mod context;
mod coordinator;
mod error_codes;
mod handlers;
pub mod listener;
mod metrics;
mod partitions;
mod registry;
pub mod replication;

pub use context::{Broker, KafkaConfig};
pub use coordinator::CoordinatorError;
pub use metrics::{metrics, KafkaMetrics};
pub use partitions::log_config_for;
pub use registry::supported_apis;
