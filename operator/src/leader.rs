//! Leader election over a coordination.k8s.io Lease, so two operator replicas can run and only
//! one reconciles. The decision is a pure function of the Lease and the clock; the loop around
//! it does the API calls and uses the Lease's resourceVersion so two candidates cannot both win.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::Client;
use tokio::sync::watch;

use crate::error::Result;

/// What a candidate should do with the Lease it read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseDecision {
    /// No Lease exists: create it naming us.
    Create,
    /// We hold it: renew it.
    Renew,
    /// Another holder let it expire: take it over.
    TakeOver,
    /// Another holder is alive: stand by.
    StandBy,
}

pub fn decide(lease: Option<&Lease>, me: &str, now: Timestamp) -> LeaseDecision {
    let Some(spec) = lease.and_then(|l| l.spec.as_ref()) else {
        return if lease.is_some() {
            LeaseDecision::TakeOver
        } else {
            LeaseDecision::Create
        };
    };
    match spec.holder_identity.as_deref() {
        Some(h) if h == me => LeaseDecision::Renew,
        None | Some("") => LeaseDecision::TakeOver,
        Some(_) => {
            let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
            let renewed = spec
                .renew_time
                .as_ref()
                .or(spec.acquire_time.as_ref())
                .map(|t| t.0);
            match renewed {
                Some(t) if now.duration_since(t).as_secs() < duration => LeaseDecision::StandBy,
                _ => LeaseDecision::TakeOver,
            }
        }
    }
}

/// Lease parameters.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's identity, its pod name.
    pub identity: String,
    pub lease_duration: Duration,
    /// How often to renew; well under `lease_duration` so a slow API call does not lose it.
    pub renew_every: Duration,
}

fn stamped(mut lease: Lease, cfg: &LeaseConfig, now: Timestamp, acquire: bool) -> Lease {
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if acquire {
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.holder_identity = Some(cfg.identity.clone());
    spec.lease_duration_seconds = Some(cfg.lease_duration.as_secs() as i32);
    spec.renew_time = Some(MicroTime(now));
    lease
}

/// One round of the election: returns whether we hold the Lease afterwards.
pub async fn try_acquire(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool> {
    let now = Timestamp::now();
    let current = api.get_opt(&cfg.name).await?;
    let decision = decide(current.as_ref(), &cfg.identity, now);
    let pp = PostParams::default();
    let outcome = match (decision, current) {
        (LeaseDecision::StandBy, _) => return Ok(false),
        (LeaseDecision::Create, _) | (_, None) => {
            let fresh = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    namespace: Some(cfg.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: None,
            };
            api.create(&pp, &stamped(fresh, cfg, now, true)).await
        }
        (d, Some(existing)) => {
            // replace() sends the resourceVersion we read: if another candidate wrote first the
            // API server answers 409 and we stay a follower.
            let acquire = d == LeaseDecision::TakeOver;
            api.replace(&cfg.name, &pp, &stamped(existing, cfg, now, acquire))
                .await
        }
    };
    match outcome {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Gives the Lease up on a clean shutdown, if we still hold it, so a standby takes over at its
/// next renewal instead of after the lease duration.
pub async fn release(client: Client, cfg: &LeaseConfig) -> Result<()> {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let Some(mut lease) = api.get_opt(&cfg.name).await? else {
        return Ok(());
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(()),
        // Someone else already wrote it: nothing of ours to release.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Runs the election until the process stops, publishing leadership on the returned channel.
pub fn spawn(client: Client, cfg: LeaseConfig) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    tokio::spawn(async move {
        loop {
            let leading = match try_acquire(&api, &cfg).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "lease renewal failed");
                    false
                }
            };
            if tx.send(leading).is_err() {
                return;
            }
            tokio::time::sleep(cfg.renew_every).await;
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::SignedDuration;

    fn lease(holder: &str, renewed_secs_ago: i64, now: Timestamp) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(now - SignedDuration::from_secs(renewed_secs_ago))),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn no_lease_means_create_it() {
        assert_eq!(decide(None, "a", Timestamp::now()), LeaseDecision::Create);
    }

    #[test]
    fn our_own_lease_is_renewed() {
        let now = Timestamp::now();
        assert_eq!(
            decide(Some(&lease("a", 100, now)), "a", now),
            LeaseDecision::Renew
        );
    }

    #[test]
    fn a_live_holder_keeps_the_lease_and_an_expired_one_loses_it() {
        let now = Timestamp::now();
        assert_eq!(
            decide(Some(&lease("b", 5, now)), "a", now),
            LeaseDecision::StandBy
        );
        assert_eq!(
            decide(Some(&lease("b", 16, now)), "a", now),
            LeaseDecision::TakeOver
        );
    }
}
