//! The cluster-wide kill switch as the operator sees it: the pause marker on firedrill's own
//! Namespace ([`PAUSE_KEY`]), read at most every [`FRESH_FOR`] for all controllers.

use std::time::{Duration, Instant};

use firedrill_core::api::{PAUSE_KEY, pause_of};
use k8s_openapi::api::core::v1::Namespace;
use kube::{Api, Client, ResourceExt};
use tokio::sync::Mutex;

/// How long a reading of the pause is used before the Namespace is read again.
pub const FRESH_FOR: Duration = Duration::from_secs(2);

/// What the operator knows of the pause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pause {
    /// Not paused.
    Off,
    /// Paused, and why.
    On(String),
    /// The marker could not be read. Nothing new starts (the kill switch may be on), but
    /// nothing running is aborted on a guess.
    Unknown(String),
}

impl Pause {
    /// Why nothing may start now, if it may not.
    pub fn blocks_start(&self) -> Option<String> {
        match self {
            Pause::Off => None,
            Pause::On(why) => Some(format!(
                "firedrill is paused cluster-wide ({why}); `chaosctl resume` lifts it"
            )),
            Pause::Unknown(e) => Some(format!(
                "cannot tell whether firedrill is paused ({PAUSE_KEY} unreadable: {e})"
            )),
        }
    }

    /// Why what runs must stop now, if it must: only a pause that was read.
    pub fn halts(&self) -> Option<String> {
        match self {
            Pause::On(why) => Some(format!("firedrill is paused cluster-wide: {why}")),
            Pause::Off | Pause::Unknown(_) => None,
        }
    }
}

/// The pause of one Namespace, cached for [`FRESH_FOR`].
#[derive(Debug)]
pub struct PauseReader {
    namespace: String,
    last: Mutex<Option<(Instant, Pause)>>,
}

impl PauseReader {
    pub fn new(namespace: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            last: Mutex::new(None),
        }
    }

    /// The pause now (a reading at most [`FRESH_FOR`] old).
    pub async fn read(&self, client: &Client) -> Pause {
        let mut last = self.last.lock().await;
        if let Some((at, pause)) = last.as_ref()
            && at.elapsed() < FRESH_FOR
        {
            return pause.clone();
        }
        let api: Api<Namespace> = Api::all(client.clone());
        let pause = match api.get(&self.namespace).await {
            Ok(ns) => match pause_of(ns.labels(), ns.annotations()) {
                Some(why) => Pause::On(why),
                None => Pause::Off,
            },
            Err(e) => Pause::Unknown(unreadable(&e)),
        };
        *last = Some((Instant::now(), pause.clone()));
        pause
    }
}

/// Why the marker could not be read, as a person would say it: the API server's own message
/// (`namespaces "firedrill-system" not found`), not the debug dump of its whole answer.
fn unreadable(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_marker_is_said_in_the_api_servers_words() {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure",
            "message": "namespaces \"firedrill-system\" not found",
            "reason": "NotFound",
            "code": 404,
        }))
        .unwrap();
        let why = unreadable(&kube::Error::Api(Box::new(status)));
        assert_eq!(why, "namespaces \"firedrill-system\" not found");
        let why = Pause::Unknown(why).blocks_start().unwrap();
        assert!(!why.contains("Status {"), "{why}");
    }

    #[test]
    fn a_pause_blocks_starts_and_halts_runs_an_unreadable_one_only_blocks_starts() {
        assert_eq!(Pause::Off.blocks_start(), None);
        assert_eq!(Pause::Off.halts(), None);
        let on = Pause::On("stop-all by ana".into());
        assert!(on.blocks_start().unwrap().contains("chaosctl resume"));
        assert!(on.halts().unwrap().contains("stop-all by ana"));
        let unknown = Pause::Unknown("timed out".into());
        assert!(unknown.blocks_start().unwrap().contains("timed out"));
        assert_eq!(unknown.halts(), None, "nothing is aborted on a guess");
    }
}
