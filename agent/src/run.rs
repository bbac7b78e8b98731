//! The agent's loop: keeps the view of this node's Injections from the watch, asks the
//! planner what to do whenever something changes or falls due, and does it.
//!
//! The timer is the agent's own: the loop wakes at the planner's next due time whether or
//! not the watch delivers anything, and every API call has a short deadline, so expiry
//! reverts happen on time while the API server is unreachable.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use firedrill_core::api::{Injection, InjectionSpec, refusal};
use futures_util::{FutureExt, StreamExt};
use kube::runtime::watcher;

use crate::cluster::{Cluster, WatchEvent};
use crate::contract::{display_name, own_expiry, show, wanted};
use crate::driver::{self, Beat};
use crate::error::Result;
use crate::exec::Executor;
use crate::planner::{self, Checks, Key, Memory, Report, RevertReason, Step, Wanted};
use crate::pods::PodProcesses;
use crate::translate::key_of;

/// The longest the loop sleeps without looking at the clock again (wall-clock jumps).
pub const MAX_SLEEP: Duration = Duration::from_secs(30);
/// How long the agent leaves the API alone after a call failed.
pub const API_BACKOFF: Duration = Duration::from_secs(5);
/// How many API calls of one kind (finalizers, status reports) the agent has in flight at
/// once when many Injections fall due together. One at a time, each waited its round trip:
/// 200 new Injections took a minute to apply over three agents (operator/README.md, "Scale").
pub const CONCURRENT_CALLS: usize = 16;
/// How often a batch of API calls in flight stops to take in the watch and revert what
/// came due meanwhile. A pass's batches took up to 10 s at the end of 1,000 experiments,
/// and a fault whose time ran out waited for them all (operator/README.md, "Scale").
pub const LOOK_BETWEEN_CALLS: Duration = Duration::from_millis(200);

/// This node's Injections as the watch last showed them, by journal key.
#[derive(Debug, Default)]
pub struct Store {
    objects: BTreeMap<Key, Injection>,
    /// A relist in progress (the previous complete list stays in use until it is done).
    relist: Option<BTreeMap<Key, Injection>>,
    /// Whether a complete list has been seen since the agent started.
    known: bool,
}

impl Store {
    /// Takes in one watch event. Objects without a usable UID are ignored (logged).
    pub fn apply(&mut self, event: watcher::Event<Injection>) {
        let keyed = |i: Injection| match key_of(i.metadata.uid.as_deref().unwrap_or_default()) {
            Ok(key) => Some((key, i)),
            Err(e) => {
                tracing::warn!(injection = %display_name(&i), error = %e, "ignored");
                None
            }
        };
        match event {
            watcher::Event::Init => self.relist = Some(BTreeMap::new()),
            watcher::Event::InitApply(i) => {
                if let (Some(list), Some((k, i))) = (self.relist.as_mut(), keyed(i)) {
                    list.insert(k, i);
                }
            }
            watcher::Event::InitDone => {
                self.objects = self.relist.take().unwrap_or_default();
                self.known = true;
            }
            watcher::Event::Apply(i) => {
                if let Some((k, i)) = keyed(i) {
                    self.objects.insert(k, i);
                }
            }
            watcher::Event::Delete(i) => {
                if let Some((k, _)) = keyed(i) {
                    self.objects.remove(&k);
                }
            }
        }
    }

    pub fn known(&self) -> bool {
        self.known
    }

    pub fn get(&self, key: &str) -> Option<&Injection> {
        self.objects.get(key)
    }

    /// Whether the experiment of `spec` cuts its node off while it holds.
    pub fn cut_off(&self, spec: &InjectionSpec) -> bool {
        spec.cut_off_among(self.objects.values().map(|i| &i.spec))
    }

    /// What the planner needs of this node's Injections; `None` until a list is complete.
    pub fn view(&self, node: &str) -> Option<Vec<Wanted>> {
        if !self.known {
            return None;
        }
        // Usually none or one: the cuts of this node, against which every Injection is told.
        let cuts: Vec<&InjectionSpec> = self
            .objects
            .values()
            .map(|i| &i.spec)
            .filter(|s| s.node_name == node && s.action.cuts_node_off())
            .collect();
        Some(
            self.objects
                .values()
                .filter_map(
                    |i| match wanted(i, node, i.spec.cut_off_among(cuts.iter().copied())) {
                        Ok(w) => w,
                        Err(e) => {
                            tracing::warn!(injection = %display_name(i), error = %e, "ignored");
                            None
                        }
                    },
                )
                .collect(),
        )
    }
}

/// The most watch events taken in before a pass: the pass that follows a flood still comes
/// soon enough for the expiry timer.
pub const MAX_EVENTS_PER_PASS: usize = 1_000;

/// Whether the watch can go on, after [`take_events`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    Open,
    Ended,
}

/// Takes in `first` and every event the watch holds already (up to
/// [`MAX_EVENTS_PER_PASS`]) without waiting for more. One pass per event would plan a burst
/// of new Injections one at a time, each pass seeing one more, and the batches would never
/// hold more than one: 200 new Injections over three agents waited ~7 s for their apply.
///
/// "Already held" includes what the HTTP connection has read but not yet handed over: its
/// task hands the watch one chunk (one event) at a time, and on the agent's one thread it
/// runs only when this task yields. So when nothing is ready, this yields once and looks
/// again before deciding that nothing more is waiting. Without that, each pass took in one
/// event: at N=200 every apply batch held one Injection and the watch fell up to 17 s
/// behind (operator/README.md, "Scale").
pub async fn take_events<S>(
    store: &mut Store,
    first: Option<WatchEvent>,
    mut events: std::pin::Pin<&mut S>,
) -> Watch
where
    S: futures_util::Stream<Item = WatchEvent> + ?Sized,
{
    let mut next = first;
    let mut taken = 0;
    loop {
        match next {
            Some(Ok(event)) => store.apply(event),
            Some(Err(e)) => {
                // The watcher backs off before its next try: nothing more is waiting.
                tracing::warn!(category = "kube", error = %e, "watch failed; retrying");
                return Watch::Open;
            }
            None => return Watch::Ended,
        }
        taken += 1;
        // Only asked for when it will be taken in: an event polled out is not put back.
        if taken == MAX_EVENTS_PER_PASS {
            tracing::debug!(taken, "watch events taken: the most for one pass");
            return Watch::Open;
        }
        next = match events.next().now_or_never() {
            Some(event) => event,
            None => {
                tokio::task::yield_now().await;
                match events.next().now_or_never() {
                    Some(event) => event,
                    None => {
                        tracing::debug!(taken, "watch events taken");
                        return Watch::Open;
                    }
                }
            }
        };
    }
}

/// How long the loop sleeps before looking again: until `wake`, at once when `wake` has
/// already passed (a pass that ran past an expiry must not sleep through it), and never
/// longer than [`MAX_SLEEP`].
pub fn sleep_until(wake: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Duration {
    match wake {
        Some(at) => (at - now).to_std().unwrap_or(Duration::ZERO).min(MAX_SLEEP),
        None => MAX_SLEEP,
    }
}

/// The watch of this node's Injections, while it runs.
struct Events(std::pin::Pin<Box<dyn futures_util::Stream<Item = WatchEvent> + Send>>);

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Events")
    }
}

/// The agent: executor, API, view and memory.
#[derive(Debug)]
pub struct Agent {
    node: String,
    exec: Executor,
    cluster: Cluster,
    store: Store,
    memory: Memory,
    /// No API writes before this (after a failure).
    api_quiet_until: Option<tokio::time::Instant>,
    /// Stamped after every pass of the loop (the liveness probe reads it).
    heartbeat: Option<std::path::PathBuf>,
    /// What was read of each driver's heartbeat Lease (the dead man's switch).
    beats: BTreeMap<String, Beat>,
    /// Faults this agent holds that cut its node off, with their own end: until then the
    /// API server is out of reach, and a call would only hold up the loop for its deadline
    /// (and the revert with it).
    cut_off: BTreeMap<Key, DateTime<Utc>>,
    /// The watch; `None` before the loop starts and once it ended (the loop starts it again).
    events: Option<Events>,
    /// The next time something falls due, as the last plan said.
    due: Option<DateTime<Utc>>,
    /// A revert made while a pass's API calls were in flight: the pass plans again.
    reverted_between_calls: bool,
}

impl Agent {
    pub fn new(node: impl Into<String>, exec: Executor, cluster: Cluster) -> Self {
        Self {
            node: node.into(),
            exec,
            cluster,
            store: Store::default(),
            memory: Memory::default(),
            api_quiet_until: None,
            heartbeat: None,
            beats: BTreeMap::new(),
            cut_off: BTreeMap::new(),
            events: None,
            due: None,
            reverted_between_calls: false,
        }
    }

    /// Stamps `path` after every pass of the loop (see [`crate::heartbeat`]).
    pub fn with_heartbeat(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.heartbeat = Some(path.into());
        self
    }

    /// Runs until `shutdown` completes; then reverts everything it holds (a new agent
    /// applies again what is still wanted; an agent that is uninstalled leaves nothing).
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let wake = self.tick().await;
            if let Some(path) = &self.heartbeat
                && let Err(e) = crate::heartbeat::beat(path)
            {
                tracing::warn!(path = %path.display(), error = %e, "cannot stamp the heartbeat; the liveness probe will restart the agent");
            }
            let sleep = sleep_until(wake, Utc::now());
            let events = match &mut self.events {
                Some(events) => events,
                None => self.events.insert(Events(Box::pin(self.cluster.watch()))),
            };
            tokio::select! {
                event = events.0.next() => self.take_in(event).await,
                () = tokio::time::sleep(sleep) => {}
                () = &mut shutdown => break,
            }
        }
        tracing::info!("shutting down: reverting everything this agent holds");
        let reverted = self.exec.revert_all()?;
        tracing::info!(reverted, "shut down");
        Ok(())
    }

    /// Plans and executes until nothing more is due now; returns the next due time.
    pub async fn tick(&mut self) -> Option<DateTime<Utc>> {
        let mut wake = None;
        // A revert or apply changes the journal, which can make more due at once (report,
        // release, apply again); a few passes settle it.
        for pass in 0..4 {
            let pass_start = std::time::Instant::now();
            let (held, unreadable) = match self.exec.held() {
                Ok(h) => h,
                Err(e) => {
                    tracing::error!(category = e.category(), error = %e, "cannot read the journal");
                    // Expiry still holds: undo what was due from the journal as last read.
                    let undone = self.exec.revert_remembered_due(Utc::now());
                    if undone > 0 {
                        tracing::warn!(
                            undone,
                            "reverted at expiry from the journal as last read; its entries stay for the next reader"
                        );
                    }
                    return Some(Utc::now() + chrono::TimeDelta::seconds(1));
                }
            };
            for e in unreadable {
                tracing::error!(category = "journal_corrupt", error = %e, "journal file left for a human");
            }
            let mut view = self.store.view(&self.node);
            if let Some(view) = view.as_mut() {
                self.read_heartbeats(view).await;
            }
            self.memory.forget_gone(view.as_deref(), &held);
            let plan = planner::plan(view.as_deref(), &held, &self.memory, Utc::now());
            wake = plan.wake;
            self.due = plan.wake;
            let planned = pass_start.elapsed();
            let steps = plan.steps.len();
            let mut changed = false;
            let mut pending = plan.steps;
            while !pending.is_empty() {
                let first = pending.remove(0);
                let kind = std::mem::discriminant(&first);
                // The steps of a batched kind run together where the first of them stands
                // in the planner's order (reverts first, applies last).
                let batch: Vec<Step> = if batched(&first) {
                    std::iter::once(first)
                        .chain(pending.extract_if(.., |s| std::mem::discriminant(s) == kind))
                        .collect()
                } else {
                    vec![first]
                };
                changed |= self.execute_all(batch).await;
            }
            if std::mem::take(&mut self.reverted_between_calls) {
                changed = true;
                // Its report and release are due now, even after the last pass.
                wake = Some(Utc::now());
            }
            tracing::debug!(
                pass,
                wanted = view.as_ref().map_or(0, Vec::len),
                held = held.len(),
                steps,
                plan_ms = planned.as_millis(),
                pass_ms = pass_start.elapsed().as_millis(),
                "pass done"
            );
            if !changed {
                break;
            }
        }
        wake
    }

    /// Reads the heartbeat Leases that are due and tells the view what they say; forgets
    /// those no live Injection names.
    async fn read_heartbeats(&mut self, view: &mut [Wanted]) {
        if self.api_quiet() {
            // Not read now: what was read before says nothing about the driver now.
            for beat in self.beats.values_mut() {
                beat.answered = false;
            }
            driver::annotate(view, &self.beats);
            return;
        }
        let followed = driver::followed(view);
        self.beats.retain(|lease, _| followed.contains(lease));
        for lease in driver::due(view, &self.beats, Utc::now()) {
            let answer = self.cluster.heartbeat(&lease).await;
            let beat = Beat::read(self.beats.get(&lease), answer, Utc::now());
            self.beats.insert(lease, beat);
        }
        driver::annotate(view, &self.beats);
    }

    /// Takes in `first` and what else the watch holds (see [`take_events`]); a watch that
    /// ended is started again by the loop.
    async fn take_in(&mut self, first: Option<WatchEvent>) {
        let Some(events) = &mut self.events else {
            return;
        };
        if take_events(&mut self.store, first, events.0.as_mut()).await == Watch::Ended {
            tracing::warn!("watch ended; starting it again");
            self.events = None;
        }
    }

    /// Collects the answers of API calls in flight; every [`LOOK_BETWEEN_CALLS`] meanwhile,
    /// takes in the watch and reverts what came due (see [`Self::revert_what_came_due`]).
    /// The calls must not borrow the agent: they go on while it reverts.
    async fn while_calls<R>(&mut self, calls: impl futures_util::Stream<Item = R>) -> Vec<R> {
        let mut calls = std::pin::pin!(calls);
        let mut look = tokio::time::interval_at(
            tokio::time::Instant::now() + LOOK_BETWEEN_CALLS,
            LOOK_BETWEEN_CALLS,
        );
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut answers = Vec::new();
        loop {
            tokio::select! {
                answer = calls.next() => match answer {
                    Some(answer) => answers.push(answer),
                    None => return answers,
                },
                _ = look.tick() => self.revert_what_came_due().await,
            }
        }
    }

    /// Between the API calls of a pass: takes in what the watch holds, and when it held
    /// something or a time came due, reverts what the planner says must end now (deleted,
    /// expired, ended, its driver gone). Nothing else: reports, releases and applies wait
    /// for the next pass, as does what only a read of the API server would tell.
    async fn revert_what_came_due(&mut self) {
        let waiting = self
            .events
            .as_mut()
            .and_then(|events| events.0.next().now_or_never());
        let news = waiting.is_some();
        if let Some(first) = waiting {
            self.take_in(first).await;
        }
        let now = Utc::now();
        if !news && self.due.is_none_or(|due| due > now) {
            return;
        }
        // An unreadable journal is the pass's to handle (it reverts from the last read).
        let Ok((held, _)) = self.exec.held() else {
            return;
        };
        let mut view = self.store.view(&self.node);
        if let Some(view) = view.as_mut() {
            driver::annotate(view, &self.beats);
        }
        let plan = planner::plan(view.as_deref(), &held, &self.memory, now);
        self.due = plan.wake;
        for step in plan.steps {
            // An interrupted apply is put right by a whole pass, not in the middle of one.
            if let Step::Revert { reason, .. } = &step
                && *reason != RevertReason::Interrupted
                && self.execute(step)
            {
                self.reverted_between_calls = true;
            }
        }
    }

    fn api_quiet(&self) -> bool {
        let now = Utc::now();
        self.api_quiet_until
            .is_some_and(|t| tokio::time::Instant::now() < t)
            || self.cut_off.values().any(|end| *end > now)
    }

    fn api_failed(&mut self, what: &str, key: &str, e: &crate::Error) {
        tracing::warn!(key, category = e.category(), error = %e, "{what} failed; trying again later");
        self.api_quiet_until = Some(tokio::time::Instant::now() + API_BACKOFF);
    }

    /// Carries out steps of one kind; returns whether the journal changed. API calls of a
    /// kind go out together ([`CONCURRENT_CALLS`] at a time); kernel work one step at a time.
    async fn execute_all(&mut self, steps: Vec<Step>) -> bool {
        let keys = || {
            steps
                .iter()
                .map(|s| s.key().to_owned())
                .collect::<Vec<Key>>()
        };
        match steps.first() {
            Some(Step::Recheck(_)) => self.recheck(keys()),
            Some(Step::Apply(_)) => self.apply_many(keys()).await,
            Some(Step::Release(_)) => {
                self.release_many(keys()).await;
                false
            }
            Some(Step::Report { .. }) => {
                let reports = steps
                    .into_iter()
                    .filter_map(|s| match s {
                        Step::Report { key, report } => Some((key, report)),
                        _ => None,
                    })
                    .collect();
                self.report_many(reports).await;
                false
            }
            _ => {
                let mut changed = false;
                for step in steps {
                    changed |= self.execute(step);
                }
                changed
            }
        }
    }

    /// Carries out one step of the kernel's (revert, enforce, salvage) or, alone, one of
    /// the batched kinds; returns whether the journal changed.
    fn execute(&mut self, step: Step) -> bool {
        let key = step.key().to_owned();
        let injection = self.store.get(&key).cloned();
        let name = injection
            .as_ref()
            .map(display_name)
            .unwrap_or_else(|| key.clone());
        match step {
            Step::Revert { reason, .. } => match self.exec.revert(&key) {
                Ok(n) => {
                    tracing::info!(injection = %name, faults = n, "{}", reason.describe());
                    self.memory.complete.remove(&key);
                    self.memory.checks.remove(&key);
                    self.cut_off.remove(&key);
                    if reason == RevertReason::Interrupted {
                        // To be applied again whole: not an end.
                        self.memory.reported.remove(&key);
                    } else {
                        // The status says when it was reverted, not when that could be
                        // told; and the planner never applies it again.
                        self.memory.reverted_at.insert(key.clone(), Utc::now());
                    }
                    true
                }
                Err(e) => {
                    tracing::error!(injection = %name, category = e.category(), error = %e, "revert failed");
                    false
                }
            },
            Step::Enforce(_) => {
                let Some(injection) = injection else {
                    return false;
                };
                match self.exec.enforce(&injection.spec) {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(injection = %name, killed = n, "killed again: the power is still off")
                    }
                    Err(e) => {
                        tracing::warn!(injection = %name, category = e.category(), error = %e, "enforcing a kill failed")
                    }
                }
                false
            }
            Step::Salvage(_) => {
                let Some(injection) = injection else {
                    return false;
                };
                let found = self.exec.salvage(&key, &injection.spec);
                tracing::error!(injection = %name, found = %found, "journal entry unreadable: salvaged by inspecting the node; the Injection keeps its finalizer");
                self.memory.complete.remove(&key);
                self.memory.salvaged.insert(key, found);
                true
            }
            // Never alone here: execute_all batches them.
            Step::Recheck(_) | Step::Apply(_) | Step::Release(_) | Step::Report { .. } => false,
        }
    }

    /// The Injections of `keys` as the watch last showed them, with their display names.
    fn known(&self, keys: impl IntoIterator<Item = Key>) -> Vec<(Key, String, Injection)> {
        keys.into_iter()
            .filter_map(|key| {
                let injection = self.store.get(&key)?.clone();
                Some((key, display_name(&injection), injection))
            })
            .collect()
    }

    /// Writes the statuses `reports` ask for.
    async fn report_many(&mut self, reports: Vec<(Key, Report)>) {
        if self.api_quiet() {
            return;
        }
        let due = reports
            .into_iter()
            .filter_map(|(key, report)| {
                let injection = self.store.get(&key)?.clone();
                Some((key, display_name(&injection), injection, report))
            })
            .collect();
        self.send_reports(due).await;
    }

    /// Writes each status, with the Warning Event a report makes, and remembers what was
    /// told.
    async fn send_reports(&mut self, due: Vec<(Key, String, Injection, Report)>) {
        let cluster = &self.cluster.clone();
        let calls = futures_util::stream::iter(due)
            .map(|(key, name, injection, report)| async move {
                let answer = cluster.report(&injection, &report).await;
                // What a person must act on is also an Event, where they look.
                if answer.is_ok()
                    && let Some((reason, message)) = warning(&report)
                {
                    cluster.warn(&injection, reason, message).await;
                }
                (key, name, report, answer)
            })
            .buffer_unordered(CONCURRENT_CALLS);
        let answers = self.while_calls(calls).await;
        for (key, name, report, answer) in answers {
            match answer {
                Ok(()) => {
                    tracing::info!(injection = %name, state = ?report.state(), "status reported");
                    if let (Report::Checked { lapses, .. }, Some(checks)) =
                        (&report, self.memory.checks.get_mut(&key))
                    {
                        checks.reported.clone_from(lapses);
                    }
                    self.memory.reported.insert(key, report.state());
                }
                Err(e) => self.api_failed("status report", &name, &e),
            }
        }
    }

    /// Removes the agent's finalizer from the Injections of `keys`.
    async fn release_many(&mut self, keys: Vec<Key>) {
        if self.api_quiet() {
            return;
        }
        let due = self.known(keys);
        let cluster = &self.cluster.clone();
        let calls =
            futures_util::stream::iter(due)
                .map(|(key, name, injection)| async move {
                    (key, name, cluster.release(&injection).await)
                })
                .buffer_unordered(CONCURRENT_CALLS);
        let answers = self.while_calls(calls).await;
        for (key, name, answer) in answers {
            match answer {
                Ok(()) => {
                    self.memory.released.insert(key);
                }
                Err(e) => self.api_failed("finalizer removal", &name, &e),
            }
        }
    }

    /// Checks the held faults of `keys` against the node in one pass, re-applying what is
    /// gone, and records each lapse. Returns whether any lapsed (the repair is measured by
    /// another look at once; the journal is what changed then).
    fn recheck(&mut self, keys: Vec<Key>) -> bool {
        let items: Vec<(Key, Option<InjectionSpec>)> = keys
            .into_iter()
            .map(|key| {
                let spec = self.store.get(&key).map(|i| i.spec.clone());
                (key, spec)
            })
            .collect();
        let checked = match self.exec.recheck_many(&items) {
            Ok(checked) => checked,
            // A check that cannot tell is no evidence that the fault held.
            Err(e) => {
                let why = format!("the fault could not be checked: {e}");
                items
                    .into_iter()
                    .map(|(key, _)| (key, Ok(vec![why.clone()])))
                    .collect()
            }
        };
        let mut lapsed = false;
        for (key, result) in checked {
            let now = Utc::now();
            let missing = match result {
                Ok(missing) => missing,
                Err(e) => vec![format!("the fault could not be checked: {e}")],
            };
            let injection = self.store.get(&key);
            let name = injection.map(display_name).unwrap_or_else(|| key.clone());
            let applied_at = injection
                .and_then(|i| i.status.as_ref()?.applied_at)
                .unwrap_or(now);
            let checks = self
                .memory
                .checks
                .entry(key)
                .or_insert_with(|| Checks::new(applied_at, now));
            let open_before = checks.lapses.last().is_some_and(|l| l.healed_at.is_none());
            checks.record(&missing, now);
            if !missing.is_empty() && !open_before {
                tracing::warn!(injection = %name, missing = %missing.join("; "), "the held fault lapsed; re-applied");
            }
            lapsed |= !missing.is_empty();
        }
        lapsed
    }

    /// Applies the Injections of `keys`: one read of this node's labels for the refusal
    /// check, the finalizers together, the faults one at a time, the statuses together.
    /// Returns whether any was applied, failed or refused.
    async fn apply_many(&mut self, keys: Vec<Key>) -> bool {
        if self.api_quiet() {
            return false;
        }
        let due = self.known(keys);
        let Some((_, first, _)) = due.first() else {
            return false;
        };
        let mut clock = BatchClock::start(&due);
        // The last check before acting, on what the agent reads itself: this node's labels
        // now, and the pods' namespaces. A refusal is reported (next pass) and never applied.
        let labels = match self.cluster.node_labels().await {
            Ok(labels) => labels,
            Err(e) => {
                let first = first.clone();
                self.api_failed("reading this node's labels", &first, &e);
                return false;
            }
        };
        let mut changed = false;
        let mut admitted = Vec::new();
        for (key, name, injection) in due {
            match refusal(&injection.spec.action, &labels, self.cluster.protected()) {
                Some(why) => {
                    tracing::error!(injection = %name, reason = %why, "refused: not applied");
                    let message = format!("refused by the agent on node {}: {why}", self.node);
                    self.memory.refused.insert(key, message);
                    changed = true;
                }
                None => admitted.push((key, name, injection)),
            }
        }
        clock.labels = clock.lap();
        // The finalizer first: an Injection deleted from now on waits for our revert. In
        // the planner's order, so that the faults go in in it too.
        let cluster = &self.cluster.clone();
        let calls = futures_util::stream::iter(admitted)
            .map(|(key, name, injection)| async move {
                let answer = cluster.add_finalizer(&injection).await;
                (key, name, injection, answer)
            })
            .buffered(CONCURRENT_CALLS);
        let finalized = self.while_calls(calls).await;
        clock.finalizers = clock.lap();
        // One walk of /proc for the batch's sandboxes; an apply whose pods it missed, or
        // whose processes changed since, looks again for itself.
        let found = self
            .exec
            .find_cut_pods(finalized.iter().map(|(_, _, i, _)| &i.spec))
            .unwrap_or_else(|e| {
                tracing::warn!(category = e.category(), error = %e, "finding the batch's sandboxes failed; each apply looks for its own");
                PodProcesses::default()
            });
        let mut reports = Vec::new();
        let (finalized, first_cut) = cuts_last(finalized, |(_, _, i, _)| i);
        for (index, (key, name, injection, answer)) in finalized.into_iter().enumerate() {
            // Once this node is cut off nothing reaches the API server until the cut ends:
            // what went in before the cut is told first, or its experiment could not see it
            // effective (a blackout's kill and cut of one node).
            if index == first_cut && !reports.is_empty() && !self.api_quiet() {
                self.send_reports(std::mem::take(&mut reports)).await;
            }
            match answer {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    self.api_failed("adding the finalizer", &name, &e);
                    continue;
                }
            }
            // Deleted while the finalizers went on (the watch was taken in meanwhile): a
            // fault asked to end before it went in is never applied.
            if self
                .store
                .get(&key)
                .is_none_or(|i| i.metadata.deletion_timestamp.is_some())
            {
                tracing::info!(injection = %name, "deleted before it was applied: not applied");
                changed = true;
                continue;
            }
            clock.applied += 1;
            match self.apply_one(&key, &name, &injection, &found).await {
                Applied::NotNow => {}
                Applied::Told => changed = true,
                Applied::Tell(report) => {
                    changed = true;
                    reports.push((key, name, injection, report));
                }
            }
        }
        clock.faults = clock.lap();
        if self.api_quiet() {
            // A fault just cut this node off, or a call of this batch failed: the statuses
            // go out on a later pass (the planner asks again for what is not reported).
            clock.log();
            return changed;
        }
        self.send_reports(reports).await;
        clock.statuses = clock.lap();
        clock.log();
        changed
    }

    /// Applies one Injection whose finalizer is in place.
    async fn apply_one(
        &mut self,
        key: &str,
        name: &str,
        injection: &Injection,
        found: &PodProcesses,
    ) -> Applied {
        let expired = injection.spec.expires_at <= Utc::now();
        let cut_off = self.store.cut_off(&injection.spec);
        // Cutting its own node off, the agent loses the API server with the last rule: it
        // says "applied" first, while it still can (a failure is reported after, with
        // nothing applied and the API server in reach again), and reverts at the expiry
        // on its own clock.
        if !expired && injection.spec.action.cuts_node_off() {
            let announced = Report::Applied { at: Utc::now() };
            match self.cluster.report(injection, &announced).await {
                Ok(()) => {
                    tracing::info!(injection = %name, reverts_at = %show(own_expiry(&injection.spec, Utc::now(), cut_off)), "cutting this node off: reported applied beforehand");
                    self.memory
                        .reported
                        .insert(key.to_owned(), announced.state());
                }
                Err(e) => {
                    // Not announced, not applied: tried again on the next pass.
                    self.api_failed("status report", name, &e);
                    return Applied::NotNow;
                }
            }
        }
        let result = if expired {
            Err(crate::Error::Invalid(format!(
                "expired at {} before it could be applied",
                show(injection.spec.expires_at)
            )))
        } else {
            self.exec.apply_among(key, &injection.spec, found, cut_off)
        };
        let report = match result {
            Ok(summary) => {
                let ends_at = own_expiry(&injection.spec, Utc::now(), cut_off);
                tracing::info!(injection = %name, reverts_at = %show(ends_at), "applied: {summary}");
                if injection.spec.action.cuts_node_off() {
                    self.cut_off.insert(key.to_owned(), ends_at);
                }
                self.memory.complete.insert(key.to_owned());
                Report::Applied { at: Utc::now() }
            }
            Err(e) => {
                tracing::error!(injection = %name, category = e.category(), error = %e, "apply failed; nothing left applied");
                let message = format!("{} failed on node {}: {e}", name, self.node);
                self.memory.failed.insert(key.to_owned(), message.clone());
                Report::Failed { message }
            }
        };
        if self.memory.reported.get(key) == Some(&report.state()) {
            // Announced before the cut; the API server is out of reach now.
            return Applied::Told;
        }
        Applied::Tell(report)
    }
}

/// What came of applying one Injection.
#[derive(Debug)]
enum Applied {
    /// Nothing done; tried again on a later pass.
    NotNow,
    /// Done, and its status already says so.
    Told,
    /// Done (applied or failed); its status is to be written.
    Tell(Report),
}

/// Where one apply batch spends its time, logged once per batch: the agents' share of
/// "asked -> effective" (operator/README.md, "Scale") is these phases and the waits between
/// batches, and a figure per phase tells which one to work on.
#[derive(Debug)]
struct BatchClock {
    due: usize,
    applied: usize,
    /// The longest any Injection of the batch has existed, at the batch's start.
    oldest: Option<chrono::TimeDelta>,
    lap_start: std::time::Instant,
    labels: Duration,
    finalizers: Duration,
    faults: Duration,
    statuses: Duration,
}

impl BatchClock {
    fn start(due: &[(Key, String, Injection)]) -> Self {
        let now = Utc::now();
        let oldest = due
            .iter()
            .filter_map(|(_, _, i)| i.metadata.creation_timestamp.as_ref())
            .filter_map(|t| DateTime::from_timestamp(t.0.as_second(), 0))
            .map(|created| now - created)
            .max();
        Self {
            due: due.len(),
            applied: 0,
            oldest,
            lap_start: std::time::Instant::now(),
            labels: Duration::ZERO,
            finalizers: Duration::ZERO,
            faults: Duration::ZERO,
            statuses: Duration::ZERO,
        }
    }

    /// The time since the last lap (or the start).
    fn lap(&mut self) -> Duration {
        let now = std::time::Instant::now();
        now.saturating_duration_since(std::mem::replace(&mut self.lap_start, now))
    }

    fn log(&self) {
        let ms = |d: Duration| d.as_millis();
        tracing::info!(
            due = self.due,
            applied = self.applied,
            oldest_s = self.oldest.map(|d| d.num_seconds()),
            labels_ms = ms(self.labels),
            finalizers_ms = ms(self.finalizers),
            faults_ms = ms(self.faults),
            statuses_ms = ms(self.statuses),
            "apply batch done"
        );
    }
}

/// `items` with the Injections that cut their node off moved to the end (each kind in
/// its order), and the index of the first of those.
fn cuts_last<T>(items: Vec<T>, injection: impl Fn(&T) -> &Injection) -> (Vec<T>, usize) {
    let (mut rest, cuts): (Vec<T>, Vec<T>) = items
        .into_iter()
        .partition(|item| !injection(item).spec.action.cuts_node_off());
    let first_cut = rest.len();
    rest.extend(cuts);
    (rest, first_cut)
}

/// Whether the steps of this kind run as one batch: the ones that are API calls (and the
/// re-checks, which look at the node in one pass).
fn batched(step: &Step) -> bool {
    matches!(
        step,
        Step::Recheck(_) | Step::Apply(_) | Step::Release(_) | Step::Report { .. }
    )
}

/// The Warning Event a report also makes: what a person must act on.
fn warning(report: &Report) -> Option<(&'static str, &str)> {
    match report {
        Report::Refused { message } => Some(("Refused", message)),
        Report::JournalUnreadable { message, .. } => Some(("JournalUnreadable", message)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use firedrill_core::api::{InjectionSpec, InjectionState};
    use kube::api::ObjectMeta;

    fn inj(uid: &str, node: &str) -> Injection {
        Injection {
            metadata: ObjectMeta {
                name: Some(format!("i-{uid}")),
                namespace: Some("chaos".into()),
                uid: Some(uid.into()),
                ..ObjectMeta::default()
            },
            spec: InjectionSpec {
                node_name: node.into(),
                experiment: "chaos/e".into(),
                action: firedrill_core::planner::isolate(vec![]),
                expires_at: Utc.timestamp_opt(2_000_000_000, 0).unwrap(),
                hold_for: None,
                heartbeat: None,
            },
            status: None,
        }
    }

    /// A client whose API server takes `delay` to answer anything, with an Injection.
    fn slow_api(delay: Duration) -> kube::Client {
        let answer = serde_json::to_vec(&inj("aaaa", "n1")).unwrap();
        let server = tower::service_fn(move |_: http::Request<kube::client::Body>| {
            let answer = answer.clone();
            async move {
                tokio::time::sleep(delay).await;
                http::Response::builder()
                    .status(200)
                    .header("content-type", "application/json")
                    .body(kube::client::Body::from(answer))
            }
        });
        kube::Client::new(server, "chaos")
    }

    /// A freeze of a pod with no process: a real journalled fault that touches nothing.
    fn freeze(uid: &str, expires_at: DateTime<Utc>, state: InjectionState) -> Injection {
        let mut i = inj(uid, "n1");
        i.spec.expires_at = expires_at;
        i.spec.action = firedrill_core::api::NodeAction {
            network: None,
            processes: Some(firedrill_core::api::ProcessAction {
                pods: vec![firedrill_core::api::PodRef {
                    namespace: "chaos".into(),
                    name: "gone".into(),
                    uid: format!("{uid}-pod"),
                }],
                signal: firedrill_core::api::ProcessSignal::Freeze,
            }),
            read_only_volume: None,
        };
        i.status = Some(firedrill_core::api::InjectionStatus {
            state,
            ..Default::default()
        });
        i
    }

    /// An agent for node n1 whose API server answers after [`SLOW_ANSWER`], holding 96
    /// faults still to report applied (six rounds of calls, about 3 s) and the fault
    /// `timed`, reported applied, ending at `timed_ends`. Returns the key of `timed`.
    fn busy_agent(dir: &std::path::Path, timed: &Injection) -> (Agent, Key) {
        std::fs::create_dir_all(dir.join("proc")).unwrap();
        let exec = Executor::new(
            &dir.join("journal"),
            &dir.join("kubelet"),
            crate::ProcFs::new(dir.join("proc")),
        )
        .unwrap();
        let api = slow_api(SLOW_ANSWER);
        let mut agent = Agent::new("n1", exec, Cluster::new(api, "n1", "chaos"));
        let far = Utc::now() + chrono::TimeDelta::minutes(5);
        let mut injections: Vec<Injection> = (0..96)
            .map(|i| freeze(&uid(i + 1), far, InjectionState::Pending))
            .collect();
        injections.push(timed.clone());
        agent.store.apply(watcher::Event::Init);
        for i in &injections {
            let key = key_of(i.metadata.uid.as_deref().unwrap()).unwrap();
            agent.exec.apply(&key, &i.spec).unwrap();
            agent.memory.complete.insert(key);
            agent.store.apply(watcher::Event::InitApply(i.clone()));
        }
        agent.store.apply(watcher::Event::InitDone);
        (
            agent,
            key_of(timed.metadata.uid.as_deref().unwrap()).unwrap(),
        )
    }

    const SLOW_ANSWER: Duration = Duration::from_millis(500);
    /// The executor's kernel work is one at a time in the process: a test applying 97
    /// faults alongside another would find it busy.
    static ONE_BUSY_AGENT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    /// How long after `since` the agent reverted `key`, and that nothing else was.
    fn reverted_after(agent: &Agent, key: &str, since: DateTime<Utc>) -> chrono::TimeDelta {
        let (held, _) = agent.exec.held().unwrap();
        assert!(held.iter().all(|h| h.key != key), "still held");
        assert_eq!(held.len(), 96);
        let at = agent.memory.reverted_at.get(key).copied();
        at.expect("reverted") - since
    }

    /// A fault whose time runs out while a pass waits on a slow API server is reverted
    /// then, not after the pass: 1,000 experiments ending together held faults up to 10 s
    /// past their end while the agents' passes reported and released the others.
    #[tokio::test]
    async fn a_fault_due_while_api_calls_are_in_flight_is_reverted_on_time() {
        let _alone = ONE_BUSY_AGENT.lock().await;
        let dir = tempfile::tempdir().unwrap();
        // On a whole second, as the journal keeps it: 0.7-1.7 s from now.
        let soon = Utc::now() + chrono::TimeDelta::milliseconds(1700);
        let ends = DateTime::from_timestamp(soon.timestamp(), 0).unwrap();
        let timed = freeze(&uid(1000), ends, InjectionState::Applied);
        let (mut agent, key) = busy_agent(dir.path(), &timed);
        let started = std::time::Instant::now();
        agent.tick().await;
        let took = started.elapsed();
        assert!(took >= 6 * SLOW_ANSWER, "the reports took {took:?}");
        let late = reverted_after(&agent, &key, ends);
        eprintln!("reports took {took:?}; the due fault was reverted {late} after its end");
        assert!(
            late >= chrono::TimeDelta::zero() && late < chrono::TimeDelta::milliseconds(600),
            "reverted {late} after its end, behind the API calls"
        );
    }

    /// The same for a deletion the watch delivers while the calls are in flight.
    #[tokio::test]
    async fn a_fault_deleted_while_api_calls_are_in_flight_is_reverted_at_once() {
        let _alone = ONE_BUSY_AGENT.lock().await;
        let dir = tempfile::tempdir().unwrap();
        let far = Utc::now() + chrono::TimeDelta::minutes(5);
        let timed = freeze(&uid(1000), far, InjectionState::Applied);
        let (mut agent, key) = busy_agent(dir.path(), &timed);
        let (send, receive) = tokio::sync::mpsc::unbounded_channel::<WatchEvent>();
        agent.events = Some(Events(Box::pin(futures_util::stream::unfold(
            receive,
            |mut receive| async move { receive.recv().await.map(|e| (e, receive)) },
        ))));
        let deleter = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(700)).await;
            let mut deleted = timed;
            deleted.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::now(),
                ));
            let asked = Utc::now();
            send.send(Ok(watcher::Event::Apply(deleted))).unwrap();
            asked
        });
        agent.tick().await;
        let asked = deleter.await.unwrap();
        let late = reverted_after(&agent, &key, asked);
        eprintln!("the deleted fault was reverted {late} after the watch delivered it");
        assert!(
            late >= chrono::TimeDelta::zero() && late < chrono::TimeDelta::milliseconds(600),
            "reverted {late} after its deletion, behind the API calls"
        );
    }

    #[test]
    fn the_injections_that_cut_their_node_off_go_in_last() {
        let kill = |uid: &str| freeze(uid, Utc::now(), InjectionState::Pending);
        // `inj` isolates its node.
        let batch = vec![
            inj("aaaa", "n1"),
            kill("bbbb"),
            inj("cccc", "n1"),
            kill("dddd"),
        ];
        let (ordered, first_cut) = cuts_last(batch, |i| i);
        let uids: Vec<_> = ordered
            .iter()
            .map(|i| i.metadata.uid.clone().unwrap())
            .collect();
        assert_eq!(uids, ["bbbb", "dddd", "aaaa", "cccc"]);
        assert_eq!(first_cut, 2);
        let (none_cut, first_cut) = cuts_last(vec![kill("bbbb")], |i| i);
        assert_eq!((none_cut.len(), first_cut), (1, 1));
    }

    #[test]
    fn a_wake_time_already_past_means_no_sleep_not_the_longest() {
        let now = Utc.timestamp_opt(1_900_000_000, 0).unwrap();
        let past = now - chrono::TimeDelta::milliseconds(5);
        assert_eq!(sleep_until(Some(past), now), Duration::ZERO);
        let soon = now + chrono::TimeDelta::milliseconds(1500);
        assert_eq!(sleep_until(Some(soon), now), Duration::from_millis(1500));
        let far = now + chrono::TimeDelta::hours(1);
        assert_eq!(sleep_until(Some(far), now), MAX_SLEEP);
        assert_eq!(sleep_until(None, now), MAX_SLEEP);
    }

    #[test]
    fn a_kill_on_a_node_its_experiment_cuts_off_ends_with_the_cut() {
        let applied = |mut i: Injection| {
            i.spec.hold_for = Some(std::time::Duration::from_secs(45).into());
            i.status = Some(firedrill_core::api::InjectionStatus {
                state: firedrill_core::api::InjectionState::Applied,
                applied_at: Some(Utc.timestamp_opt(1_900_000_000, 0).unwrap()),
                ..Default::default()
            });
            i
        };
        let mut kill = applied(inj("aaaa", "n1"));
        kill.spec.action = firedrill_core::api::NodeAction {
            network: None,
            processes: Some(firedrill_core::api::ProcessAction {
                pods: vec![],
                signal: firedrill_core::api::ProcessSignal::Kill,
            }),
            read_only_volume: None,
        };
        let mut store = Store::default();
        store.apply(watcher::Event::Init);
        store.apply(watcher::Event::InitApply(kill.clone()));
        store.apply(watcher::Event::InitDone);
        let end = |store: &Store| store.view("n1").unwrap()[0].expires_at;
        let applied_at = Utc.timestamp_opt(1_900_000_000, 0).unwrap();
        assert_eq!(
            end(&store),
            applied_at + chrono::TimeDelta::seconds(50),
            "the grace"
        );
        // The same experiment cuts n1 off: no revert can reach the kill before the cut ends.
        store.apply(watcher::Event::Apply(applied(inj("bbbb", "n1"))));
        let view = store.view("n1").unwrap();
        assert!(
            view.iter()
                .all(|w| w.expires_at == applied_at + chrono::TimeDelta::seconds(45)),
            "{view:?}"
        );
        assert!(store.cut_off(&kill.spec));
    }

    #[test]
    fn the_store_is_unknown_until_a_list_completes_and_keeps_it_through_a_relist() {
        let mut store = Store::default();
        assert_eq!(store.view("n1"), None);
        store.apply(watcher::Event::Init);
        store.apply(watcher::Event::InitApply(inj("aaaa", "n1")));
        store.apply(watcher::Event::InitApply(inj("bbbb", "n2")));
        assert_eq!(store.view("n1"), None, "not complete yet");
        store.apply(watcher::Event::InitDone);
        let view = store.view("n1").unwrap();
        assert_eq!(view.len(), 1, "another node's is filtered out");
        assert_eq!(view[0].key, "aaaa");
        // A relist: the old list stays in use until the new one is complete.
        store.apply(watcher::Event::Init);
        assert_eq!(store.view("n1").unwrap().len(), 1);
        store.apply(watcher::Event::InitDone);
        assert_eq!(store.view("n1").unwrap().len(), 0);
        store.apply(watcher::Event::Apply(inj("cccc", "n1")));
        assert!(store.get("cccc").is_some());
        store.apply(watcher::Event::Delete(inj("cccc", "n1")));
        assert!(store.get("cccc").is_none());
        // No usable UID: ignored, not a panic.
        store.apply(watcher::Event::Apply(inj("not a uid!", "n1")));
        assert_eq!(store.view("n1").unwrap().len(), 0);
    }

    fn uid(i: usize) -> String {
        format!("{i:08x}")
    }

    #[tokio::test]
    async fn a_burst_of_watch_events_is_taken_in_whole_before_the_next_pass() {
        let mut store = Store::default();
        let first: WatchEvent = Ok(watcher::Event::Init);
        // 200 new Injections the watch holds already, then nothing yet (a stream that
        // stays pending).
        let burst: Vec<WatchEvent> = (0..200)
            .map(|i| Ok(watcher::Event::InitApply(inj(&uid(i), "n1"))))
            .chain(std::iter::once(Ok(watcher::Event::InitDone)))
            .collect();
        let mut events = futures_util::stream::iter(burst).chain(futures_util::stream::pending());
        let watch = take_events(&mut store, Some(first), std::pin::Pin::new(&mut events)).await;
        assert_eq!(watch, Watch::Open);
        assert_eq!(
            store.view("n1").map(|v| v.len()),
            Some(200),
            "one pass must see the whole burst"
        );
    }

    /// As the real watch delivers them: another task (the HTTP connection's) hands the
    /// events over one at a time, and runs only when the agent's task yields, on the same
    /// one thread (the agent's runtime). A burst it holds is still taken in whole.
    #[tokio::test(flavor = "current_thread")]
    async fn a_burst_handed_over_one_at_a_time_by_another_task_is_taken_in_whole() {
        let mut store = Store::default();
        store.apply(watcher::Event::Init);
        store.apply(watcher::Event::InitDone);
        let (tx, rx) = tokio::sync::mpsc::channel::<WatchEvent>(1);
        let sender = tokio::spawn(async move {
            for i in 0..200 {
                let event = Ok(watcher::Event::Apply(inj(&uid(i), "n1")));
                if tx.send(event).await.is_err() {
                    break;
                }
            }
            // The watch stays open: the sender is kept until the test ends.
            std::future::pending::<()>().await;
        });
        let events = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|event| (event, rx))
        });
        let mut events = std::pin::pin!(events);
        let first = events.next().await;
        assert_eq!(
            take_events(&mut store, first, events.as_mut()).await,
            Watch::Open
        );
        assert_eq!(
            store.view("n1").map(|v| v.len()),
            Some(200),
            "one pass must see every event the other task holds"
        );
        sender.abort();
    }

    #[tokio::test]
    async fn taking_events_stops_at_the_cap_and_loses_none_and_sees_a_watch_end() {
        let mut store = Store::default();
        store.apply(watcher::Event::Init);
        store.apply(watcher::Event::InitDone);
        let n = MAX_EVENTS_PER_PASS + 5;
        let mut events = futures_util::stream::iter(
            (1..n).map(|i| Ok(watcher::Event::Apply(inj(&uid(i), "n1")))),
        );
        let first: WatchEvent = Ok(watcher::Event::Apply(inj(&uid(0), "n1")));
        let mut events = std::pin::Pin::new(&mut events);
        assert_eq!(
            take_events(&mut store, Some(first), events.as_mut()).await,
            Watch::Open
        );
        assert_eq!(store.view("n1").map(|v| v.len()), Some(MAX_EVENTS_PER_PASS));
        // The next pass takes the rest, and then the end of the watch.
        let next = events.next().await;
        assert_eq!(
            take_events(&mut store, next, events.as_mut()).await,
            Watch::Ended
        );
        assert_eq!(store.view("n1").map(|v| v.len()), Some(n));
    }
}
