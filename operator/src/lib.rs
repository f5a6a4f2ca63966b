//! chronik-operator: runs Chronik clusters on Kubernetes.
//!
//! Data flow: a `ChronikCluster` ([`crd`]) is turned into Kubernetes objects by pure builders
//! ([`desired`]); the [`controller`] applies them, reads pods and the cluster's admin API
//! ([`admin`]), and lets the pure [`plan`] decide the next step of a scale or a rolling update;
//! deleting a cluster can also delete its object-store data ([`tiered_data`]).

pub mod admin;
pub mod controller;
pub mod crd;
pub mod desired;
pub mod endpoints;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod plan;
pub mod tiered_data;

pub use error::{Error, Result};
