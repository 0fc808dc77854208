//! The store's health, kept in one place and read by everything that answers: synced queries,
//! the registry services, gRPC health, `Stats` (and so `wfdb status` and `wfdb doctor`).
//!
//! Healthy, or failing with a cause (the I/O error and the database folder) and since when. A
//! failure starts when a write or a flush of the store fails; it ends only once a write and a
//! flush succeed again and every root was reconciled (see `daemon::recovery`).

use std::sync::RwLock;
use std::time::SystemTime;

use tokio::sync::watch;

use super::DaemonError;

/// Why the store cannot be written, and since when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// What failed, as a person reads it (the I/O error and the database folder).
    pub cause: String,
    /// When the first failed write of this failure happened.
    pub since: SystemTime,
}

impl Failure {
    /// `since` in Unix milliseconds.
    pub fn since_ms(&self) -> i64 {
        self.since
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// The daemon-wide store health.
pub struct StoreHealth {
    failure: RwLock<Option<Failure>>,
    /// `true` while healthy; watched by the gRPC health reporter.
    serving: watch::Sender<bool>,
}

impl Default for StoreHealth {
    fn default() -> Self {
        StoreHealth {
            failure: RwLock::new(None),
            serving: watch::channel(true).0,
        }
    }
}

impl StoreHealth {
    /// The current failure, `None` when healthy.
    pub fn failure(&self) -> Option<Failure> {
        self.failure
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether the store takes writes.
    pub fn is_healthy(&self) -> bool {
        self.failure
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }

    /// Records a failed write. Returns `true` when this starts a failure (the store was
    /// healthy); a later cause replaces the first one, the start time is kept.
    pub fn fail(&self, cause: impl Into<String>) -> bool {
        let cause = cause.into();
        let started = {
            let mut failure = self.failure.write().unwrap_or_else(|p| p.into_inner());
            match failure.as_mut() {
                Some(f) => {
                    f.cause = cause;
                    false
                }
                None => {
                    *failure = Some(Failure {
                        cause,
                        since: SystemTime::now(),
                    });
                    true
                }
            }
        };
        if started {
            self.serving.send_replace(false);
        }
        started
    }

    /// Marks the store healthy again.
    pub fn recover(&self) {
        *self.failure.write().unwrap_or_else(|p| p.into_inner()) = None;
        self.serving.send_replace(true);
    }

    /// `Ok` while healthy, else the refusal every answer that must be current gives.
    pub fn check(&self) -> Result<(), DaemonError> {
        match self.failure() {
            None => Ok(()),
            Some(f) => Err(DaemonError::StoreFailing {
                cause: f.cause.clone(),
                since: humantime_utc(f.since),
            }),
        }
    }

    /// Follows health changes (`true`: serving).
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.serving.subscribe()
    }
}

/// A UTC time as `YYYY-MM-DD HH:MM:SS UTC` (no time-zone database needed).
pub fn humantime_utc(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = crate::catalog::record::civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_failure_keeps_its_start_and_takes_the_latest_cause() {
        let h = StoreHealth::default();
        let mut serving = h.watch();
        assert!(h.is_healthy() && h.check().is_ok() && *serving.borrow_and_update());
        assert!(h.fail("no space left on device on /db"));
        let first = h.failure().unwrap();
        assert!(!h.fail("still no space on /db"), "a failure starts once");
        let now = h.failure().unwrap();
        assert_eq!(now.since, first.since);
        assert_eq!(now.cause, "still no space on /db");
        assert!(!*serving.borrow_and_update());
        match h.check() {
            Err(DaemonError::StoreFailing { cause, .. }) => assert!(cause.contains("still")),
            other => panic!("expected a refusal, got {other:?}"),
        }
        h.recover();
        assert!(h.is_healthy() && h.check().is_ok() && *serving.borrow_and_update());
    }

    #[test]
    fn utc_times_are_civil_dates() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(humantime_utc(t), "2023-11-14 22:13:20 UTC");
        assert_eq!(
            humantime_utc(SystemTime::UNIX_EPOCH),
            "1970-01-01 00:00:00 UTC"
        );
    }
}
