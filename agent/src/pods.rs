//! Finding a pod's processes and its sandbox's network namespace from the host's `/proc`,
//! without a container runtime client.
//!
//! Every process of a pod lives in a cgroup whose path names the pod's UID: with the
//! cgroupfs driver `.../kubepods/besteffort/pod<uid>/<container>`, with the systemd driver
//! `.../kubepods-besteffort-pod<uid with _ for ->.slice/cri-containerd-<id>.scope`, on
//! cgroup v1 (one line per hierarchy) and v2 (one line) alike. The agent runs with
//! `hostPID: true`, so its `/proc` shows every process of the node.
//!
//! A network cut goes into the namespace of the pod's *sandbox* (the pause process): an
//! application container that crash-loops comes back into the same namespace, and the
//! path `/proc/<pause>/ns/net` stays valid as long as the sandbox does.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use firedrill_faults::netns::NetnsIdentity;

use crate::error::{Error, Result};

/// One process of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodProcess {
    pub pid: i32,
    /// `/proc/PID/comm` without the newline.
    pub comm: String,
    /// Start time in clock ticks after boot (`/proc/PID/stat` field 22).
    pub start_time: u64,
}

/// A pod's sandbox: the process that holds its network namespace, and that namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    pub pid: i32,
    /// `<proc>/<pid>/ns/net`.
    pub netns: PathBuf,
    pub identity: NetnsIdentity,
}

/// Whether a `/proc/PID/cgroup` file puts the process in the pod with `uid`.
pub fn cgroup_names_pod(cgroup: &str, uid: &str) -> bool {
    !uid.is_empty() && pod_names(cgroup).any(|name| name_is_uid(name, uid))
}

/// Every UID-shaped name a `/proc/PID/cgroup` file gives a pod: what follows `pod` in a
/// path segment (without `.slice`) where `pod` starts the segment or follows a `-`.
fn pod_names(cgroup: &str) -> impl Iterator<Item = &str> {
    cgroup
        .lines()
        // "hierarchy-id:controllers:path"; the path may itself contain ':'.
        .filter_map(|line| line.splitn(3, ':').nth(2))
        .flat_map(|path| path.split('/'))
        .map(|segment| segment.strip_suffix(".slice").unwrap_or(segment))
        .flat_map(|segment| {
            segment
                .match_indices("pod")
                .filter(move |(at, _)| *at == 0 || segment[..*at].ends_with('-'))
                .map(move |(at, _)| &segment[at + 3..])
        })
}

/// Whether a name from [`pod_names`] is `uid`: as it is, or with `_` for `-` (systemd).
fn name_is_uid(name: &str, uid: &str) -> bool {
    name == uid
        || (name.len() == uid.len()
            && name
                .bytes()
                .zip(uid.bytes())
                .all(|(n, u)| n == u || (u == b'-' && n == b'_')))
}

/// Field 22 (start time) of a `/proc/PID/stat` line.
fn start_time(stat: &str) -> Option<u64> {
    // The command (field 2) is in parentheses and may contain ") "; fields after the last
    // ')' start at field 3.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    rest.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// A view of a `/proc` tree: the real one, or a fake one in tests.
#[derive(Debug, Clone)]
pub struct ProcFs {
    root: PathBuf,
}

impl Default for ProcFs {
    fn default() -> Self {
        Self::new("/proc")
    }
}

impl ProcFs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every numeric entry of the tree.
    fn pids(&self) -> Result<Vec<i32>> {
        let mut pids = Vec::new();
        for dirent in std::fs::read_dir(&self.root).map_err(Error::read(&self.root))? {
            let dirent = dirent.map_err(Error::read(&self.root))?;
            if let Some(pid) = dirent.file_name().to_str().and_then(|n| n.parse().ok()) {
                pids.push(pid);
            }
        }
        pids.sort_unstable();
        Ok(pids)
    }

    /// Reads a file of a process; `None` when the process has gone meanwhile.
    fn read(&self, pid: i32, file: &str) -> Result<Option<String>> {
        let path = self.root.join(pid.to_string()).join(file);
        match std::fs::read_to_string(&path) {
            Ok(s) => Ok(Some(s)),
            // ESRCH shows up when the process exits while the file is read.
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(nix::libc::ESRCH) =>
            {
                Ok(None)
            }
            Err(e) => Err(Error::read(path)(e)),
        }
    }

    /// Whether `process` still runs: its pid is there with the same start time (a pid
    /// reused since has another).
    pub fn still_runs(&self, process: &PodProcess) -> Result<bool> {
        Ok(self
            .read(process.pid, "stat")?
            .is_some_and(|stat| start_time(&stat) == Some(process.start_time)))
    }

    /// The path of a process's network namespace link.
    pub fn netns_path(&self, pid: i32) -> PathBuf {
        self.root.join(pid.to_string()).join("ns/net")
    }

    /// The identity of a process's network namespace; `None` when it has gone.
    pub fn netns_identity(&self, pid: i32) -> Result<Option<NetnsIdentity>> {
        let path = self.netns_path(pid);
        match std::fs::metadata(&path) {
            Ok(m) => Ok(Some(NetnsIdentity {
                dev: m.dev(),
                ino: m.ino(),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::read(path)(e)),
        }
    }

    /// The namespaces that are the node's own: this agent's (it runs with `hostNetwork`)
    /// and PID 1's (the host's init, with `hostPID`). On a machine that runs several
    /// nodes as network namespaces (the e2e cluster) they differ, and both are off limits.
    pub fn node_netns(&self) -> Result<Vec<NetnsIdentity>> {
        let mut out = Vec::new();
        for who in ["self", "1"] {
            let path = self.root.join(who).join("ns/net");
            match std::fs::metadata(&path) {
                Ok(m) => out.push(NetnsIdentity {
                    dev: m.dev(),
                    ino: m.ino(),
                }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                // Without CAP_SYS_PTRACE over PID 1 (a sandboxed test run): only our own
                // namespace can be compared.
                Err(e) if who == "1" && e.kind() == std::io::ErrorKind::PermissionDenied => {
                    tracing::debug!(error = %e, "cannot read PID 1's network namespace");
                }
                Err(e) => return Err(Error::read(path)(e)),
            }
        }
        Ok(out)
    }

    /// Every running process of the pod with `uid`, oldest first; never this agent itself.
    pub fn pod_processes(&self, uid: &str) -> Result<Vec<PodProcess>> {
        Ok(self.processes_of_pods([uid])?.take(uid))
    }

    /// Every running process of each pod in `uids`, from one walk of `/proc`: a re-check
    /// pass over many held faults reads each process's cgroup once, not once per pod.
    pub fn processes_of_pods<'a>(
        &self,
        uids: impl IntoIterator<Item = &'a str>,
    ) -> Result<PodProcesses> {
        let mut out = PodProcesses::default();
        for uid in uids {
            if !uid.is_empty() {
                out.by_uid.insert(uid.to_owned(), vec![]);
            }
        }
        if out.by_uid.is_empty() {
            return Ok(out);
        }
        let me = i32::try_from(std::process::id()).unwrap_or(0);
        for pid in self.pids()? {
            if pid <= 1 || pid == me {
                continue;
            }
            let Some(cgroup) = self.read(pid, "cgroup")? else {
                continue;
            };
            // The cgroupfs driver names the UID as it is (a lookup); systemd's has `_`.
            let Some(uid) =
                pod_names(&cgroup).find_map(|name| match out.by_uid.get_key_value(name) {
                    Some((uid, _)) => Some(uid.clone()),
                    None if name.contains('_') => out
                        .by_uid
                        .keys()
                        .find(|uid| name_is_uid(name, uid))
                        .cloned(),
                    None => None,
                })
            else {
                continue;
            };
            let Some(stat) = self.read(pid, "stat")? else {
                continue;
            };
            // A zombie has exited already: nothing to signal, no namespace to enter.
            if stat
                .get(stat.rfind(')').unwrap_or(0)..)
                .is_some_and(|rest| rest.split_whitespace().nth(1) == Some("Z"))
            {
                continue;
            }
            let comm = self.read(pid, "comm")?.unwrap_or_default();
            if let Some(processes) = out.by_uid.get_mut(&uid) {
                processes.push(PodProcess {
                    pid,
                    comm: comm.trim_end().to_owned(),
                    start_time: start_time(&stat).unwrap_or(u64::MAX),
                });
            }
        }
        for processes in out.by_uid.values_mut() {
            processes.sort_by_key(|p| (p.start_time, p.pid));
        }
        Ok(out)
    }

    /// The pod's sandbox: the `pause` process if there is one, else its oldest process
    /// (the sandbox starts first). `Ok(None)` when the pod has no process here. Fails when
    /// the sandbox shares the node's network namespace (a `hostNetwork` pod).
    pub fn sandbox(&self, uid: &str, pod: &str) -> Result<Option<Sandbox>> {
        self.sandbox_among(&self.pod_processes(uid)?, pod)
    }

    /// [`Self::sandbox`] among a pod's processes already found.
    pub fn sandbox_among(&self, processes: &[PodProcess], pod: &str) -> Result<Option<Sandbox>> {
        let pick = processes
            .iter()
            .find(|p| p.comm == "pause")
            .or_else(|| processes.first());
        let Some(pick) = pick else {
            return Ok(None);
        };
        let Some(identity) = self.netns_identity(pick.pid)? else {
            return Ok(None);
        };
        if self.node_netns()?.contains(&identity) {
            return Err(Error::HostNetworkPod {
                pod: pod.to_owned(),
            });
        }
        Ok(Some(Sandbox {
            pid: pick.pid,
            netns: self.netns_path(pick.pid),
            identity,
        }))
    }

    /// A path to the network namespace with `identity`, through any process still in it:
    /// how a revert finds a namespace whose recorded process has gone while the namespace
    /// lives on (held by another process or a bind mount).
    pub fn find_netns(&self, identity: NetnsIdentity) -> Result<Option<PathBuf>> {
        for pid in self.pids()? {
            // A process we may not inspect cannot be the way in anyway.
            if let Ok(Some(found)) = self.netns_identity(pid)
                && found == identity
            {
                return Ok(Some(self.netns_path(pid)));
            }
        }
        Ok(None)
    }

    /// Every pid of every listed pod (pods with no process are skipped).
    pub fn pids_of_pods<'a>(
        &self,
        uids: impl IntoIterator<Item = &'a str>,
    ) -> Result<BTreeMap<String, Vec<i32>>> {
        Ok(self
            .processes_of_pods(uids)?
            .by_uid
            .into_iter()
            .map(|(uid, processes)| (uid, processes.iter().map(|p| p.pid).collect()))
            .collect())
    }
}

/// The processes of a set of pods at one moment (see [`ProcFs::processes_of_pods`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodProcesses {
    by_uid: BTreeMap<String, Vec<PodProcess>>,
}

impl PodProcesses {
    /// The processes of the pod with `uid`, oldest first; none if it was not looked for.
    pub fn of(&self, uid: &str) -> &[PodProcess] {
        self.by_uid.get(uid).map_or(&[], Vec::as_slice)
    }

    /// Takes out the processes of the pod with `uid`.
    pub fn take(&mut self, uid: &str) -> Vec<PodProcess> {
        self.by_uid.remove(uid).unwrap_or_default()
    }

    /// Only the pods in `uids` (what one held fault needs, to hand to a worker thread).
    pub fn only<'a>(&self, uids: impl IntoIterator<Item = &'a str>) -> PodProcesses {
        PodProcesses {
            by_uid: uids
                .into_iter()
                .filter_map(|uid| Some((uid.to_owned(), self.by_uid.get(uid)?.clone())))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const UID: &str = "6f1c2a3b-0d4e-4f5a-8b9c-0123456789ab";

    fn stat_line(pid: i32, comm: &str, state: char, start: u64) -> String {
        // Field 3 is the state, 4..=21 are filler, 22 is the start time.
        let filler = vec!["0"; 18].join(" ");
        format!("{pid} ({comm}) {state} {filler} {start} 1000 10\n")
    }

    /// A fake `/proc` tree. Each process's `ns/net` is a symlink to a file standing for a
    /// namespace, so processes in one namespace share an identity, as in the real one.
    struct FakeProc {
        dir: tempfile::TempDir,
    }

    impl FakeProc {
        fn new() -> Self {
            let fake = Self {
                dir: tempfile::tempdir().unwrap(),
            };
            fs::create_dir(fake.dir.path().join("namespaces")).unwrap();
            fake.process(1, "systemd", "0::/init.scope\n", 'S', 1, "host");
            fake
        }

        fn namespace(&self, name: &str) -> PathBuf {
            let path = self.dir.path().join("namespaces").join(name);
            if !path.exists() {
                fs::write(&path, name).unwrap();
            }
            path
        }

        fn process(&self, pid: i32, comm: &str, cgroup: &str, state: char, start: u64, ns: &str) {
            let dir = self.dir.path().join(pid.to_string());
            fs::create_dir_all(dir.join("ns")).unwrap();
            fs::write(dir.join("cgroup"), cgroup).unwrap();
            fs::write(dir.join("comm"), format!("{comm}\n")).unwrap();
            fs::write(dir.join("stat"), stat_line(pid, comm, state, start)).unwrap();
            std::os::unix::fs::symlink(self.namespace(ns), dir.join("ns/net")).unwrap();
        }

        fn procfs(&self) -> ProcFs {
            ProcFs::new(self.dir.path())
        }
    }

    fn v1_cgroup(uid: &str, container: &str) -> String {
        format!(
            "12:pids:/kubepods/besteffort/pod{uid}/{container}\n\
             11:memory:/kubepods/besteffort/pod{uid}/{container}\n\
             1:name=systemd:/kubepods/besteffort/pod{uid}/{container}\n"
        )
    }

    #[test]
    fn cgroup_paths_of_both_drivers_and_versions_name_the_pod() {
        assert!(cgroup_names_pod(&v1_cgroup(UID, "abc"), UID));
        let systemd = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-abc.scope\n",
            UID.replace('-', "_")
        );
        assert!(cgroup_names_pod(&systemd, UID));
        let guaranteed = format!("0::/kubepods/pod{UID}/abc\n");
        assert!(cgroup_names_pod(&guaranteed, UID));
        // Another pod, a UID that only shares a prefix, the host, an empty UID.
        assert!(!cgroup_names_pod(&v1_cgroup("11111111-2222", "abc"), UID));
        let longer = format!("0::/kubepods/pod{UID}0/abc\n");
        assert!(!cgroup_names_pod(&longer, UID));
        let embedded = format!("0::/kubepods/xpod{UID}/abc\n");
        assert!(!cgroup_names_pod(&embedded, UID));
        assert!(!cgroup_names_pod("0::/system.slice/kubelet.service\n", UID));
        assert!(!cgroup_names_pod(&v1_cgroup(UID, "abc"), ""));
    }

    #[test]
    fn finds_the_pods_processes_and_its_pause_sandbox() {
        let fake = FakeProc::new();
        // The app started before pause only in this fake; pause still wins by name.
        fake.process(40, "nats-server", &v1_cgroup(UID, "app"), 'S', 90, "pod-a");
        fake.process(30, "pause", &v1_cgroup(UID, "sandbox"), 'S', 100, "pod-a");
        fake.process(50, "defunct", &v1_cgroup(UID, "app"), 'Z', 95, "pod-a");
        fake.process(60, "other", &v1_cgroup("aaaa-bbbb", "x"), 'S', 10, "pod-b");
        let procfs = fake.procfs();
        let found = procfs.pod_processes(UID).unwrap();
        let pids: Vec<i32> = found.iter().map(|p| p.pid).collect();
        assert_eq!(pids, vec![40, 30], "oldest first, zombie left out");
        let sandbox = procfs.sandbox(UID, "ns/pod").unwrap().unwrap();
        assert_eq!(sandbox.pid, 30);
        assert_eq!(sandbox.netns, fake.dir.path().join("30/ns/net"));
        assert_eq!(procfs.netns_identity(40).unwrap(), Some(sandbox.identity));
        assert_ne!(procfs.netns_identity(60).unwrap(), Some(sandbox.identity));
    }

    #[test]
    fn a_process_found_earlier_still_runs_only_with_its_pid_and_start_time() {
        let fake = FakeProc::new();
        fake.process(30, "pause", &v1_cgroup(UID, "sandbox"), 'S', 100, "pod-a");
        let procfs = fake.procfs();
        let found = procfs.pod_processes(UID).unwrap();
        assert!(procfs.still_runs(&found[0]).unwrap());
        // The sandbox died and its pid went to another pod's process: not the same one.
        fs::remove_dir_all(fake.dir.path().join("30")).unwrap();
        assert!(!procfs.still_runs(&found[0]).unwrap(), "gone");
        fake.process(
            30,
            "pause",
            &v1_cgroup("aaaa-bbbb", "sandbox"),
            'S',
            700,
            "pod-b",
        );
        assert!(!procfs.still_runs(&found[0]).unwrap(), "pid reused");
    }

    #[test]
    fn without_pause_the_oldest_process_is_the_sandbox() {
        let fake = FakeProc::new();
        fake.process(70, "worker", &v1_cgroup(UID, "b"), 'S', 300, "pod-a");
        fake.process(71, "init", &v1_cgroup(UID, "a"), 'S', 200, "pod-a");
        assert_eq!(
            fake.procfs().sandbox(UID, "ns/pod").unwrap().unwrap().pid,
            71
        );
    }

    #[test]
    fn a_pod_with_no_process_has_no_sandbox() {
        let fake = FakeProc::new();
        assert_eq!(fake.procfs().sandbox(UID, "ns/pod").unwrap(), None);
        assert!(fake.procfs().pod_processes(UID).unwrap().is_empty());
    }

    #[test]
    fn a_host_network_pod_is_refused() {
        let fake = FakeProc::new();
        fake.process(80, "pause", &v1_cgroup(UID, "s"), 'S', 5, "host");
        let err = fake.procfs().sandbox(UID, "ns/hostnet").unwrap_err();
        assert_eq!(err.category(), "host_network_pod");
        assert!(err.to_string().contains("ns/hostnet"));
    }

    #[test]
    fn a_pod_in_the_agents_own_namespace_is_refused_too() {
        // The e2e cluster: a node is a network namespace that is not PID 1's.
        let fake = FakeProc::new();
        let me = fake.dir.path().join("self/ns");
        fs::create_dir_all(&me).unwrap();
        std::os::unix::fs::symlink(fake.namespace("node-x"), me.join("net")).unwrap();
        fake.process(81, "pause", &v1_cgroup(UID, "s"), 'S', 5, "node-x");
        let err = fake.procfs().sandbox(UID, "ns/hostnet").unwrap_err();
        assert_eq!(err.category(), "host_network_pod");
        assert_eq!(fake.procfs().node_netns().unwrap().len(), 2);
    }

    #[test]
    fn a_namespace_is_found_again_through_any_process_in_it() {
        let fake = FakeProc::new();
        fake.process(90, "pause", &v1_cgroup(UID, "s"), 'S', 5, "pod-a");
        fake.process(91, "app", &v1_cgroup(UID, "a"), 'S', 6, "pod-a");
        let procfs = fake.procfs();
        let identity = procfs.netns_identity(90).unwrap().unwrap();
        // The sandbox process is gone; the namespace lives on in 91.
        fs::remove_dir_all(fake.dir.path().join("90")).unwrap();
        assert_eq!(
            procfs.find_netns(identity).unwrap(),
            Some(fake.dir.path().join("91/ns/net"))
        );
        fs::remove_dir_all(fake.dir.path().join("91")).unwrap();
        assert_eq!(procfs.find_netns(identity).unwrap(), None);
    }

    #[test]
    fn pids_of_pods_lists_each_pod() {
        let fake = FakeProc::new();
        fake.process(10, "a", &v1_cgroup(UID, "a"), 'S', 5, "pod-a");
        let other = "0000-1111";
        let got = fake.procfs().pids_of_pods([UID, other]).unwrap();
        assert_eq!(got[UID], vec![10]);
        assert!(got[other].is_empty());
    }

    #[test]
    fn one_walk_finds_the_processes_of_many_pods() {
        let fake = FakeProc::new();
        let other = "0a0a0a0a-2222-4333-8444-555566667777";
        let systemd = format!(
            "0::/kubepods.slice/kubepods-besteffort-pod{}.slice/cri-containerd-x.scope\n",
            other.replace('-', "_")
        );
        fake.process(10, "app", &v1_cgroup(UID, "a"), 'S', 7, "pod-a");
        fake.process(11, "pause", &v1_cgroup(UID, "p"), 'S', 5, "pod-a");
        fake.process(12, "app", &systemd, 'S', 9, "pod-b");
        fake.process(
            13,
            "host",
            "0::/system.slice/kubelet.service\n",
            'S',
            1,
            "host",
        );
        let procfs = fake.procfs();
        let found = procfs
            .processes_of_pods([UID, other, "ffffffff-0000-4000-8000-000000000000"])
            .unwrap();
        let pids = |uid| found.of(uid).iter().map(|p| p.pid).collect::<Vec<_>>();
        assert_eq!(pids(UID), vec![11, 10], "oldest first");
        assert_eq!(pids(other), vec![12], "the systemd driver's name");
        assert!(found.of("ffffffff-0000-4000-8000-000000000000").is_empty());
        // The same answers as one pod at a time.
        assert_eq!(found.of(UID), procfs.pod_processes(UID).unwrap());
        let sandbox = procfs
            .sandbox_among(found.of(UID), "pod-a")
            .unwrap()
            .unwrap();
        assert_eq!(Some(sandbox), procfs.sandbox(UID, "pod-a").unwrap());
        assert_eq!(found.only([other]).of(UID), &[]);
        assert_eq!(found.only([other]).of(other), found.of(other));
    }

    #[test]
    fn start_time_parses_awkward_names() {
        assert_eq!(start_time(&stat_line(5, "a) b (c", 'S', 777)), Some(777));
        assert_eq!(start_time("garbage"), None);
    }
}
