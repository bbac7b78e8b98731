use super::*;
use chrono::TimeZone;
use firedrill_core::api::{NetworkCut, NodeAction, ProcessAction, VolumeAction};

fn spec(action: NodeAction) -> InjectionSpec {
    InjectionSpec {
        node_name: "n".into(),
        experiment: "a/b".into(),
        action,
        expires_at: Utc.timestamp_opt(2_000_000_000, 0).unwrap(),
        hold_for: None,
        heartbeat: None,
    }
}

fn pod(uid: &str) -> PodRef {
    PodRef {
        namespace: "ns".into(),
        name: "p".into(),
        uid: uid.into(),
    }
}

fn executor(dir: &Path) -> Executor {
    std::fs::create_dir_all(dir.join("proc")).unwrap();
    Executor::new(
        &dir.join("journal"),
        &dir.join("kubelet"),
        ProcFs::new(dir.join("proc")),
    )
    .unwrap()
}

#[test]
fn a_network_cut_of_a_pod_with_no_process_fails_before_anything_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let exec = executor(dir.path());
    let action = NodeAction {
        network: Some(NetworkCut {
            pods: vec![pod("u1")],
            all: true,
            peers: vec![],
            direction: Default::default(),
            loss_percent: None,
        }),
        processes: None,
        read_only_volume: None,
    };
    let err = exec.apply("k", &spec(action)).unwrap_err();
    assert_eq!(err.category(), "pod_not_found");
    assert!(err.to_string().contains("ns/p"));
    assert!(exec.held().unwrap().0.is_empty());
}

#[test]
fn the_node_itself_is_the_host_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let exec = executor(dir.path());
    let action = firedrill_core::planner::isolate(vec![]);
    let faults = exec.faults("k", &spec(action)).unwrap();
    assert!(matches!(
        &faults[..],
        [(
            _,
            Fault::Network {
                netns: Netns::Host,
                ..
            }
        )]
    ));
}

#[test]
fn processes_and_volumes_become_one_fault_each() {
    let dir = tempfile::tempdir().unwrap();
    let exec = executor(dir.path());
    let action = NodeAction {
        network: None,
        processes: Some(ProcessAction {
            pods: vec![pod("u1")],
            signal: ProcessSignal::Freeze,
        }),
        read_only_volume: None,
    };
    let faults = exec.faults("k", &spec(action)).unwrap();
    assert_eq!(
        faults,
        vec![(sub_id("k", 0).unwrap(), Fault::Freeze { pids: vec![] })]
    );
    let vol = dir
        .path()
        .join("kubelet/pods/u1/volumes/kubernetes.io~empty-dir/data");
    std::fs::create_dir_all(&vol).unwrap();
    let action = NodeAction {
        network: None,
        processes: None,
        read_only_volume: Some(VolumeAction {
            pod: pod("u1"),
            volume: "data".into(),
        }),
    };
    let faults = exec.faults("k", &spec(action)).unwrap();
    assert_eq!(
        faults,
        vec![(sub_id("k", 0).unwrap(), Fault::ReadOnly { dir: vol })]
    );
}

#[test]
fn an_action_with_two_parts_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let exec = executor(dir.path());
    let action = NodeAction {
        network: None,
        processes: None,
        read_only_volume: None,
    };
    assert_eq!(
        exec.faults("k", &spec(action)).unwrap_err().category(),
        "invalid"
    );
}

#[test]
fn held_groups_journal_entries_by_injection() {
    let dir = tempfile::tempdir().unwrap();
    let exec = executor(dir.path());
    // An empty freeze is a real, harmless journalled fault.
    for n in 0..2 {
        exec.injector
            .apply(
                &sub_id("k1", n).unwrap(),
                &Fault::Freeze { pids: vec![] },
                2_000_000_100 + n as u64,
            )
            .unwrap();
    }
    let (held, errors) = exec.held().unwrap();
    assert!(errors.is_empty());
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].key, "k1");
    assert_eq!(held[0].ids.len(), 2);
    assert_eq!(held[0].expires_at, time(2_000_000_100));
    assert_eq!(exec.revert("k1").unwrap(), 2);
    assert!(exec.held().unwrap().0.is_empty());
    assert_eq!(exec.revert("k1").unwrap(), 0, "idempotent");
}
