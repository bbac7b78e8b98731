//! A client for the cluster under test, or a skip: every cluster test starts here, and
//! with no cluster answering it prints `SKIPPED` and passes (or fails, with
//! `FIREDRILL_E2E_REQUIRE=1`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig as KubeconfigFile};
use kube::{Client, Config};

use crate::console::{note, skip};

/// The kubeconfig `e2e/cluster/up.sh` writes for its cluster.
pub const E2E_KUBECONFIG: &str = "/var/lib/firedrill-cluster/kubeconfig";

/// How long the API server has to answer before a test skips.
const ANSWER: Duration = Duration::from_secs(10);

/// Where a test looks for its cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kubeconfig {
    /// `KUBECONFIG` only (the operator's and the e2e tests: run against a cluster only when
    /// asked to).
    Env,
    /// `KUBECONFIG`, else [`E2E_KUBECONFIG`] when it is there (the agent's and chaosctl's
    /// tests, which a developer runs beside a cluster `e2e/run.sh --keep` left up).
    EnvOrE2e,
}

impl Kubeconfig {
    /// The kubeconfig file to read, or why there is none.
    pub fn path(self) -> Result<PathBuf, String> {
        if let Some(path) = std::env::var_os("KUBECONFIG").filter(|p| !p.is_empty()) {
            return Ok(PathBuf::from(path));
        }
        match self {
            Self::Env => Err("KUBECONFIG is not set (no API server to test against)".into()),
            Self::EnvOrE2e if Path::new(E2E_KUBECONFIG).exists() => Ok(E2E_KUBECONFIG.into()),
            Self::EnvOrE2e => Err(format!("neither KUBECONFIG nor {E2E_KUBECONFIG} is there")),
        }
    }
}

/// A cluster that answered: its client and the kubeconfig it came from (for a CLI under
/// test to be given the same).
#[derive(Clone)]
pub struct Cluster {
    pub client: Client,
    pub kubeconfig: PathBuf,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("kubeconfig", &self.kubeconfig)
            .finish_non_exhaustive()
    }
}

/// The cluster `from` names, when its API server answers within 10 s; otherwise `None`,
/// after [`skip`] has said why.
///
/// # Panics
///
/// As [`skip`] does, with `FIREDRILL_E2E_REQUIRE=1` and no cluster answering.
pub async fn cluster(test: &str, from: Kubeconfig) -> Option<Cluster> {
    let kubeconfig = match from.path() {
        Ok(path) => path,
        Err(why) => {
            skip(test, &why);
            return None;
        }
    };
    match connect(&kubeconfig).await {
        Ok(client) => Some(Cluster { client, kubeconfig }),
        Err(why) => {
            skip(test, &why);
            None
        }
    }
}

/// The client of the cluster in `KUBECONFIG` ([`Kubeconfig::Env`]), or `None` after a skip.
///
/// # Panics
///
/// As [`cluster`].
pub async fn client(test: &str) -> Option<Client> {
    cluster(test, Kubeconfig::Env).await.map(|c| c.client)
}

/// A client from the kubeconfig at `path` whose API server has answered, or why not.
async fn connect(path: &Path) -> Result<Client, String> {
    let shown = path.display();
    let file = KubeconfigFile::read_from(path)
        .map_err(|e| format!("cannot read kubeconfig {shown}: {e}"))?;
    let config = Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .map_err(|e| format!("bad kubeconfig {shown}: {e}"))?;
    let client = Client::try_from(config).map_err(|e| format!("no client for {shown}: {e}"))?;
    match tokio::time::timeout(ANSWER, client.apiserver_version()).await {
        Ok(Ok(version)) => {
            note(format!(
                "API server {}.{} ({shown})",
                version.major, version.minor
            ));
            Ok(client)
        }
        Ok(Err(e)) => Err(format!("the API server in {shown} does not answer: {e}")),
        Err(_) => Err(format!(
            "the API server in {shown} did not answer in {} s",
            ANSWER.as_secs()
        )),
    }
}
