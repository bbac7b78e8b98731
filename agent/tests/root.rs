//! Root-only tests of the agent's fault path on this machine, no cluster needed: a network
//! namespace of the test's own (`fdagent-*`), a sleeper in it placed in a cgroup named
//! like a pod's, and the agent's own code path (`Executor`, the planner) applying and
//! reverting for real. Each test prints `SKIPPED` and passes when not root or when `ip`
//! or `nft` is missing, and fails instead when `FIREDRILL_ROOT_REQUIRE` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use firedrill_agent::planner::{self, Memory, Step};
use firedrill_agent::translate::key_of;
use firedrill_agent::{Executor, ProcFs, revert_due};
use firedrill_core::api::{
    InjectionSpec, NetworkCut, NodeAction, PodRef, ProcessAction, ProcessSignal,
};
use firedrill_faults::Netns;

/// Reports a test that cannot run here, and passes it, unless `FIREDRILL_ROOT_REQUIRE` is
/// set (`make test` sets it): there a skipped root test would be a test that cannot fail.
fn skip(test: &str, why: &str) {
    use std::io::Write;
    assert!(
        std::env::var_os("FIREDRILL_ROOT_REQUIRE").is_none(),
        "{test} cannot run: {why} (FIREDRILL_ROOT_REQUIRE is set)"
    );
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

fn usable(test: &str) -> bool {
    if !nix::unistd::geteuid().is_root() {
        skip(test, "needs root (network namespaces, cgroups, nftables)");
        return false;
    }
    for tool in ["/usr/sbin/ip", "/usr/sbin/nft"] {
        if !Path::new(tool).exists() && !Path::new(&tool.replace("/usr", "")).exists() {
            skip(test, &format!("{tool} is missing"));
            return false;
        }
    }
    if !Path::new(CGROUP_ROOT).is_dir() {
        skip(
            test,
            &format!("no cgroup v1 pids hierarchy at {CGROUP_ROOT}"),
        );
        return false;
    }
    true
}

const CGROUP_ROOT: &str = "/sys/fs/cgroup/pids";

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A stand-in pod: a network namespace `fdagent-<pid>-<n>` and a sleeper in it, in a
/// cgroup `.../fdagent-<pid>-<n>/pod<uid>` as the kubelet would place it. Dropping it kills
/// the sleepers and removes the cgroups and the namespace.
struct FakePod {
    name: String,
    uid: String,
    cgroup: PathBuf,
    sleepers: Vec<Child>,
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

impl FakePod {
    fn new() -> Self {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!("fdagent-{}-{n}", std::process::id());
        let uid = format!("{:08x}-0000-4000-8000-{:012x}", std::process::id(), n);
        run(&["ip", "netns", "add", &name]);
        run(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        let cgroup = Path::new(CGROUP_ROOT).join(&name).join(format!("pod{uid}"));
        std::fs::create_dir_all(&cgroup).unwrap();
        let mut pod = Self {
            name,
            uid,
            cgroup,
            sleepers: vec![],
        };
        pod.add_sleeper();
        pod
    }

    /// Starts one more process in the pod (its namespace and cgroup); returns its pid.
    fn add_sleeper(&mut self) -> i32 {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, "sleep", "300"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        self.sleepers.push(child);
        // `ip netns exec` enters the namespace, then execs sleep in place.
        let ns = Netns::named(&self.name).unwrap().identity().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Netns::of_pid(pid).identity().unwrap() != ns
            || std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default() != "sleep\n"
        {
            assert!(
                Instant::now() < deadline,
                "sleeper did not enter {}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        std::fs::write(self.cgroup.join("cgroup.procs"), pid.to_string()).unwrap();
        pid
    }

    /// What the kubelet does when a pod's sandbox dies: a new sandbox, with a new network
    /// namespace, for the same pod (same uid and cgroup).
    fn recreate_sandbox(&mut self) {
        for mut child in self.sleepers.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
        run(&["ip", "netns", "del", &self.name]);
        run(&["ip", "netns", "add", &self.name]);
        run(&["ip", "-n", &self.name, "link", "set", "lo", "up"]);
        self.add_sleeper();
    }

    fn pod_ref(&self) -> PodRef {
        PodRef {
            namespace: "chaos".into(),
            name: self.name.clone(),
            uid: self.uid.clone(),
        }
    }

    fn ruleset(&self) -> String {
        run(&["ip", "netns", "exec", &self.name, "nft", "list", "ruleset"])
    }

    fn state(pid: i32) -> char {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        stat[stat.rfind(')').unwrap() + 2..].chars().next().unwrap()
    }
}

impl Drop for FakePod {
    fn drop(&mut self) {
        for child in &mut self.sleepers {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(0)),
                nix::sys::signal::Signal::SIGCONT,
            );
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir(&self.cgroup);
        if let Some(parent) = self.cgroup.parent() {
            let _ = std::fs::remove_dir(parent);
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn spec(action: NodeAction, ttl: i64) -> InjectionSpec {
    InjectionSpec {
        node_name: "this-node".into(),
        experiment: "chaos/test".into(),
        action,
        expires_at: Utc::now() + TimeDelta::seconds(ttl),
        hold_for: None,
        heartbeat: None,
    }
}

fn cut(pod: &FakePod) -> NodeAction {
    NodeAction {
        network: Some(NetworkCut {
            pods: vec![pod.pod_ref()],
            all: false,
            peers: vec!["10.99.0.0/16".into()],
            direction: Default::default(),
            loss_percent: None,
        }),
        processes: None,
        read_only_volume: None,
    }
}

fn freeze(pod: &FakePod) -> NodeAction {
    NodeAction {
        network: None,
        processes: Some(ProcessAction {
            pods: vec![pod.pod_ref()],
            signal: ProcessSignal::Freeze,
        }),
        read_only_volume: None,
    }
}

fn executor(journal: &Path) -> Executor {
    Executor::new(
        journal,
        Path::new("/nonexistent-kubelet"),
        ProcFs::default(),
    )
    .unwrap()
}

fn journal_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_network_cut_goes_into_the_pods_sandbox_and_is_reverted() {
    if !usable("a_network_cut_goes_into_the_pods_sandbox_and_is_reverted") {
        return;
    }
    let pod = FakePod::new();
    let journal = tempfile::tempdir().unwrap();
    let exec = executor(journal.path());
    let key = key_of(&pod.uid).unwrap();

    exec.apply(&key, &spec(cut(&pod), 300)).unwrap();
    let rules = pod.ruleset();
    assert!(rules.contains("table inet firedrill"), "{rules}");
    assert!(rules.contains(&format!("chain {key}-0-in")), "{rules}");
    assert!(rules.contains(&format!("chain {key}-0-out")), "{rules}");
    assert!(rules.contains("10.99.0.0/16"), "{rules}");
    assert!(
        !run(&["nft", "list", "ruleset"]).contains(&key),
        "nothing in the host's namespace"
    );
    let (held, _) = exec.held().unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].key, key);

    assert_eq!(exec.revert(&key).unwrap(), 1);
    let rules = pod.ruleset();
    assert!(!rules.contains("firedrill"), "nothing left: {rules}");
    assert!(exec.held().unwrap().0.is_empty());
    assert!(journal_files(journal.path()).is_empty(), "journal empty");
    assert_eq!(exec.revert(&key).unwrap(), 0, "a second revert is a no-op");
}

#[test]
fn a_crashed_agents_cut_is_reverted_by_the_next_one() {
    if !usable("a_crashed_agents_cut_is_reverted_by_the_next_one") {
        return;
    }
    let pod = FakePod::new();
    let journal = tempfile::tempdir().unwrap();
    let key = key_of(&pod.uid).unwrap();
    {
        // The agent applies, then dies (dropped without reverting).
        let exec = executor(journal.path());
        exec.apply(&key, &spec(cut(&pod), 300)).unwrap();
    }
    assert!(pod.ruleset().contains(&key));
    // A new agent starts. While the API is not known only expiry reverts...
    let exec = executor(journal.path());
    let (held, _) = exec.held().unwrap();
    let plan = planner::plan(None, &held, &Memory::default(), Utc::now());
    assert!(plan.steps.is_empty());
    assert!(plan.wake.is_some());
    // ...and once the list is known, a fault no Injection wants is reverted.
    let plan = planner::plan(Some(&[]), &held, &Memory::default(), Utc::now());
    let [Step::Revert { key: k, .. }] = &plan.steps[..] else {
        panic!("{plan:?}")
    };
    exec.revert(k).unwrap();
    assert!(!pod.ruleset().contains("firedrill"));
    assert!(journal_files(journal.path()).is_empty());
}

#[test]
fn the_agents_own_timer_reverts_at_expiry_without_the_api() {
    if !usable("the_agents_own_timer_reverts_at_expiry_without_the_api") {
        return;
    }
    let pod = FakePod::new();
    let journal = tempfile::tempdir().unwrap();
    let exec = executor(journal.path());
    let key = key_of(&pod.uid).unwrap();
    exec.apply(&key, &spec(cut(&pod), 2)).unwrap();
    assert_eq!(revert_due(&exec), 0, "not yet");
    assert!(pod.ruleset().contains(&key));
    std::thread::sleep(Duration::from_millis(3100));
    assert_eq!(revert_due(&exec), 1);
    assert!(!pod.ruleset().contains("firedrill"));
    assert!(journal_files(journal.path()).is_empty());
}

#[test]
fn a_namespace_outliving_its_sandbox_process_is_still_cleaned() {
    if !usable("a_namespace_outliving_its_sandbox_process_is_still_cleaned") {
        return;
    }
    let mut pod = FakePod::new();
    let journal = tempfile::tempdir().unwrap();
    let exec = executor(journal.path());
    let key = key_of(&pod.uid).unwrap();
    exec.apply(&key, &spec(cut(&pod), 300)).unwrap();
    // A second process joins the namespace; the recorded (first) one dies.
    pod.add_sleeper();
    let mut first = pod.sleepers.remove(0);
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(
        pod.ruleset().contains(&key),
        "the namespace (and our rules) live on"
    );
    assert_eq!(exec.revert(&key).unwrap(), 1);
    assert!(
        !pod.ruleset().contains("firedrill"),
        "found again by identity"
    );
    assert!(journal_files(journal.path()).is_empty());
}

#[test]
fn a_freeze_stops_the_pods_processes_until_reverted() {
    if !usable("a_freeze_stops_the_pods_processes_until_reverted") {
        return;
    }
    let pod = FakePod::new();
    let pid = i32::try_from(pod.sleepers[0].id()).unwrap();
    let journal = tempfile::tempdir().unwrap();
    let exec = executor(journal.path());
    let key = key_of(&pod.uid).unwrap();
    let summary = exec.apply(&key, &spec(freeze(&pod), 300)).unwrap();
    assert_eq!(summary, "1 process(es)");
    assert_eq!(FakePod::state(pid), 'T');
    exec.revert(&key).unwrap();
    assert_ne!(FakePod::state(pid), 'T');
    assert!(journal_files(journal.path()).is_empty());
}

#[test]
fn a_recheck_finds_a_deleted_chain_and_a_thawed_process_and_puts_them_back() {
    if !usable("a_recheck_finds_a_deleted_chain_and_a_thawed_process_and_puts_them_back") {
        return;
    }
    let pod = FakePod::new();
    let pid = i32::try_from(pod.sleepers[0].id()).unwrap();
    let journal = tempfile::tempdir().unwrap();
    let exec = executor(journal.path());
    let key = key_of(&pod.uid).unwrap();
    exec.apply(&key, &spec(cut(&pod), 300)).unwrap();
    assert_eq!(
        exec.recheck(&key, None).unwrap(),
        Vec::<String>::new(),
        "whole"
    );
    // Someone deletes firedrill's table in the pod's namespace.
    run(&[
        "ip",
        "netns",
        "exec",
        &pod.name,
        "nft",
        "delete",
        "table",
        "inet",
        "firedrill",
    ]);
    let missing = exec.recheck(&key, None).unwrap();
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(missing[0].contains("re-applied"), "{missing:?}");
    assert!(
        pod.ruleset().contains(&format!("chain {key}-0-in")),
        "put back"
    );
    assert_eq!(
        exec.recheck(&key, None).unwrap(),
        Vec::<String>::new(),
        "whole again"
    );
    exec.revert(&key).unwrap();

    // The same key again, now for a freeze (the cut is reverted).
    let frozen = key.clone();
    exec.apply(&frozen, &spec(freeze(&pod), 300)).unwrap();
    assert_eq!(FakePod::state(pid), 'T');
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGCONT,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while FakePod::state(pid) == 'T' && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let missing = exec.recheck(&frozen, None).unwrap();
    assert!(
        missing
            .iter()
            .any(|m| m.contains(&pid.to_string()) && m.contains("re-applied")),
        "{missing:?}"
    );
    assert_eq!(FakePod::state(pid), 'T', "frozen again");
    exec.revert(&frozen).unwrap();
    assert!(journal_files(journal.path()).is_empty());
}

#[test]
fn expiry_reverts_even_when_the_journal_directory_cannot_be_read() {
    if !usable("expiry_reverts_even_when_the_journal_directory_cannot_be_read") {
        return;
    }
    let pod = FakePod::new();
    let pid = i32::try_from(pod.sleepers[0].id()).unwrap();
    let root = tempfile::tempdir().unwrap();
    let journal = root.path().join("journal");
    std::fs::create_dir(&journal).unwrap();
    let exec = executor(&journal);
    let key = key_of(&pod.uid).unwrap();
    exec.apply(&key, &spec(freeze(&pod), 2)).unwrap();
    assert_eq!(exec.held().unwrap().0.len(), 1, "read once");
    // The journal's directory goes away (an unmounted or failing hostPath).
    let away = root.path().join("away");
    std::fs::rename(&journal, &away).unwrap();
    assert!(exec.held().is_err());
    assert_eq!(exec.revert_remembered_due(Utc::now()), 0, "not due yet");
    assert_eq!(FakePod::state(pid), 'T');
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(exec.revert_remembered_due(Utc::now()), 1);
    assert_ne!(
        FakePod::state(pid),
        'T',
        "thawed at expiry without the journal"
    );
    assert_eq!(exec.revert_remembered_due(Utc::now()), 0, "once");
    // Back: the entry is still there, and reverting it again is harmless.
    std::fs::rename(&away, &journal).unwrap();
    assert_eq!(exec.revert(&key).unwrap(), 1);
    assert!(journal_files(&journal).is_empty());
}

#[test]
fn a_fault_whose_journal_entry_is_corrupt_is_salvaged_and_never_reverted() {
    if !usable("a_fault_whose_journal_entry_is_corrupt_is_salvaged_and_never_reverted") {
        return;
    }
    let pod = FakePod::new();
    let pid = i32::try_from(pod.sleepers[0].id()).unwrap();
    let journal = tempfile::tempdir().unwrap();
    let exec = executor(journal.path());
    let key = key_of(&pod.uid).unwrap();
    for (action, what) in [(cut(&pod), "cut"), (freeze(&pod), "freeze")] {
        let spec = spec(action, 300);
        exec.apply(&key, &spec).unwrap();
        // The disk (or a person) damages the entry: the journal no longer says what is held.
        let files = journal_files(journal.path());
        assert_eq!(files.len(), 1, "{what}: {files:?}");
        std::fs::write(journal.path().join(&files[0]), b"{\"id\":").unwrap();

        let (held, unreadable) = exec.held().unwrap();
        assert_eq!(unreadable.len(), 1, "{what}");
        assert_eq!(
            held.len(),
            1,
            "{what}: the damaged entry still counts as held"
        );
        let mut w = planner::Wanted {
            key: key.clone(),
            expires_at: spec.expires_at,
            deleting: true,
            finalized: true,
            state: firedrill_core::api::InjectionState::Applied,
            kill: false,
            driver: None,
        };
        let mut memory = Memory::default();
        let plan = planner::plan(Some(&[w.clone()]), &held, &memory, Utc::now());
        assert_eq!(plan.steps, vec![Step::Salvage(key.clone())], "{what}");
        let found = exec.salvage(&key, &spec);
        match what {
            "cut" => {
                assert!(!pod.ruleset().contains(&key), "{what}: chains gone");
                assert!(found.contains("out of 1 namespace(s)"), "{found}");
            }
            _ => {
                assert_ne!(FakePod::state(pid), 'T', "{what}: resumed");
                assert!(found.contains("resumed 1 stopped process(es)"), "{found}");
            }
        }
        memory.salvaged.insert(key.clone(), found);
        let plan = planner::plan(Some(&[w.clone()]), &held, &memory, Utc::now());
        assert!(
            matches!(&plan.steps[..], [Step::Report { report: planner::Report::JournalUnreadable { message, .. }, .. }] if message.contains("cannot prove")),
            "{what}: {plan:?}"
        );
        // The damaged file stays for a person; only its removal lets the Injection go.
        assert_eq!(journal_files(journal.path()), files, "{what}");
        std::fs::remove_file(journal.path().join(&files[0])).unwrap();
        w.state = firedrill_core::api::InjectionState::Failed;
        let (held, _) = exec.held().unwrap();
        let plan = planner::plan(Some(&[w]), &held, &Memory::default(), Utc::now());
        assert_eq!(plan.steps, vec![Step::Release(key.clone())], "{what}");
    }
}

#[test]
fn a_recreated_sandbox_is_a_lapse_and_gets_the_cut_again() {
    if !usable("a_recreated_sandbox_is_a_lapse_and_gets_the_cut_again") {
        return;
    }
    let mut pod = FakePod::new();
    let journal = tempfile::tempdir().unwrap();
    let exec = executor(journal.path());
    let key = key_of(&pod.uid).unwrap();
    let partition = spec(cut(&pod), 300);
    exec.apply(&key, &partition).unwrap();
    assert_eq!(
        exec.recheck(&key, Some(&partition)).unwrap(),
        Vec::<String>::new(),
        "whole"
    );

    pod.recreate_sandbox();
    assert!(!pod.ruleset().contains("firedrill"), "a new namespace");
    let missing = exec.recheck(&key, Some(&partition)).unwrap();
    assert!(
        missing
            .iter()
            .any(|m| m.contains("sandbox was recreated") && m.contains("re-applied there")),
        "{missing:?}"
    );
    assert!(
        pod.ruleset().contains(&format!("chain {key}-0-in")),
        "the cut is in the new sandbox"
    );
    assert_eq!(
        exec.recheck(&key, Some(&partition)).unwrap(),
        Vec::<String>::new(),
        "whole again"
    );
    exec.revert(&key).unwrap();
    assert!(!pod.ruleset().contains("firedrill"), "reverted there");
    assert!(journal_files(journal.path()).is_empty());
}

#[test]
fn a_process_that_starts_in_a_frozen_pod_is_a_lapse_and_is_frozen_too() {
    if !usable("a_process_that_starts_in_a_frozen_pod_is_a_lapse_and_is_frozen_too") {
        return;
    }
    let mut pod = FakePod::new();
    let journal = tempfile::tempdir().unwrap();
    let exec = executor(journal.path());
    let key = key_of(&pod.uid).unwrap();
    let frozen = spec(freeze(&pod), 300);
    exec.apply(&key, &frozen).unwrap();
    assert_eq!(
        exec.recheck(&key, Some(&frozen)).unwrap(),
        Vec::<String>::new(),
        "whole"
    );

    // The kubelet recreated the pod's sandbox: the frozen process is gone, a new one runs.
    pod.recreate_sandbox();
    let started = i32::try_from(pod.sleepers[0].id()).unwrap();
    assert_ne!(FakePod::state(started), 'T');
    let missing = exec.recheck(&key, Some(&frozen)).unwrap();
    assert!(
        missing
            .iter()
            .any(|m| m.contains(&started.to_string()) && m.contains("frozen now")),
        "{missing:?}"
    );
    assert_eq!(FakePod::state(started), 'T', "frozen too");
    assert_eq!(
        exec.recheck(&key, Some(&frozen)).unwrap(),
        Vec::<String>::new(),
        "whole again"
    );
    exec.revert(&key).unwrap();
    assert_ne!(FakePod::state(started), 'T', "thawed at the end");
    assert!(journal_files(journal.path()).is_empty());
}

#[test]
fn a_cut_part_without_a_record_is_a_lapse_and_is_put_back() {
    if !usable("a_cut_part_without_a_record_is_a_lapse_and_is_put_back") {
        return;
    }
    let (a, b) = (FakePod::new(), FakePod::new());
    let journal = tempfile::tempdir().unwrap();
    let exec = executor(journal.path());
    let key = key_of(&a.uid).unwrap();
    let mut action = cut(&a);
    if let Some(network) = action.network.as_mut() {
        network.pods.push(b.pod_ref());
    }
    let partition = spec(action, 300);
    exec.apply(&key, &partition).unwrap();

    // Pod b's part is gone, record and rules (as after a put-back that failed).
    run(&[
        "ip",
        "netns",
        "exec",
        &b.name,
        "nft",
        "delete",
        "table",
        "inet",
        "firedrill",
    ]);
    std::fs::remove_file(journal.path().join(format!("{key}-2.json"))).unwrap();
    let missing = exec.recheck(&key, Some(&partition)).unwrap();
    assert!(
        missing
            .iter()
            .any(|m| m.contains("were not in place") && m.contains("re-applied there")),
        "{missing:?}"
    );
    assert!(
        b.ruleset().contains(&format!("chain {key}-2-in")),
        "put back"
    );
    assert_eq!(
        exec.recheck(&key, Some(&partition)).unwrap(),
        Vec::<String>::new(),
        "whole again"
    );
    exec.revert(&key).unwrap();
    assert!(journal_files(journal.path()).is_empty());
}

#[test]
fn one_recheck_pass_checks_every_held_fault_and_finds_each_ones_lapse() {
    if !usable("one_recheck_pass_checks_every_held_fault_and_finds_each_ones_lapse") {
        return;
    }
    // Three held faults checked in one pass (one journal read, one walk of /proc): a cut
    // whose sandbox was recreated, a freeze with a process started since, and a cut that
    // held. Each gets its own answer.
    let mut moved = FakePod::new();
    let mut frozen = FakePod::new();
    let steady = FakePod::new();
    let journal = tempfile::tempdir().unwrap();
    let exec = executor(journal.path());
    let items: Vec<(String, Option<InjectionSpec>)> = [
        (&moved, cut(&moved)),
        (&frozen, freeze(&frozen)),
        (&steady, cut(&steady)),
    ]
    .into_iter()
    .map(|(pod, action)| (key_of(&pod.uid).unwrap(), Some(spec(action, 300))))
    .collect();
    for (key, spec) in &items {
        exec.apply(key, spec.as_ref().unwrap()).unwrap();
    }
    let whole = exec.recheck_many(&items).unwrap();
    assert!(
        whole.iter().all(|(_, r)| r.as_ref().unwrap().is_empty()),
        "{whole:?}"
    );

    moved.recreate_sandbox();
    let started = frozen.add_sleeper();
    let checked = exec.recheck_many(&items).unwrap();
    let keys: Vec<&String> = checked.iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        items.iter().map(|(k, _)| k).collect::<Vec<_>>(),
        "in order"
    );
    let missing: Vec<Vec<String>> = checked.into_iter().map(|(_, r)| r.unwrap()).collect();
    assert!(
        missing[0]
            .iter()
            .any(|m| m.contains("sandbox was recreated")),
        "{missing:?}"
    );
    assert!(
        moved.ruleset().contains("firedrill"),
        "put back in the new sandbox"
    );
    assert!(
        missing[1].iter().any(|m| m.contains(&started.to_string())),
        "{missing:?}"
    );
    assert_eq!(FakePod::state(started), 'T', "frozen too");
    assert!(missing[2].is_empty(), "{missing:?}");
    let again = exec.recheck_many(&items).unwrap();
    assert!(
        again.iter().all(|(_, r)| r.as_ref().unwrap().is_empty()),
        "{again:?}"
    );
    for (key, _) in &items {
        exec.revert(key).unwrap();
    }
    assert!(journal_files(journal.path()).is_empty());
}
