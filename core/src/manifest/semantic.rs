//! Checks the CRD schema and its CEL rules cannot express. Each returns `(path, message)`
//! pairs with paths relative to `spec`; the operator reports them in an `Invalid` condition.

use crate::api::{
    DrillScheduleSpec, ExperimentSpec, FaultKind, GameDaySpec, Hypothesis, LATENCY_REFUSED,
    LabelSelector, PROTECTED_NAMESPACES, Probe, ProbeKind,
};

type Found = Vec<(String, String)>;

/// Problems in an experiment spec.
pub fn check_experiment(spec: &ExperimentSpec) -> Found {
    let mut found = Found::new();
    for (i, ns) in spec.target.namespaces.iter().enumerate() {
        if PROTECTED_NAMESPACES.contains(&ns.as_str()) {
            found.push((
                format!("target.namespaces[{i}]"),
                format!("{ns} is never a target"),
            ));
        }
    }
    if spec.fault.kind().is_none() {
        found.push(("fault".into(), "exactly one fault must be set".into()));
    }
    if spec.fault.needs_pod_selector() && spec.target.selector.is_none() {
        found.push((
            "target.selector".into(),
            format!(
                "{} acts on the pods picked by target.selector, which is missing",
                spec.fault.name()
            ),
        ));
    }
    if let Some(selector) = &spec.target.selector {
        check_selector(selector, "target.selector", &mut found);
    }
    let sides = match spec.fault.kind() {
        Some(FaultKind::NetworkPartition(p)) => Some(("networkPartition", &p.left, &p.right)),
        Some(FaultKind::NetworkLoss(l)) => Some(("networkLoss", &l.left, &l.right)),
        _ => None,
    };
    if let Some((fault, left, right)) = sides {
        for (side, group) in [("left", left), ("right", right)] {
            if let Some(selector) = &group.selector {
                check_selector(
                    selector,
                    &format!("fault.{fault}.{side}.selector"),
                    &mut found,
                );
            }
        }
    }
    if let Some(loss) = &spec.fault.network_loss {
        if !(1..=100).contains(&loss.percent) {
            found.push((
                "fault.networkLoss.percent".into(),
                format!(
                    "{} is not a share of packets: give a whole percent from 1 to 100",
                    loss.percent
                ),
            ));
        }
        if loss.delay.is_some() {
            found.push(("fault.networkLoss.delay".into(), LATENCY_REFUSED.into()));
        }
    }
    check_hypothesis(&spec.hypothesis, "hypothesis", &mut found);
    check_probes(&spec.abort_conditions, "abortConditions", &mut found);
    found
}

/// Problems in a game day spec, including every inline experiment.
pub fn check_game_day(spec: &GameDaySpec) -> Found {
    let mut found = Found::new();
    if let Some(shared) = &spec.hypothesis {
        check_hypothesis(shared, "hypothesis", &mut found);
    }
    for (i, step) in spec.experiments.iter().enumerate() {
        let Some(inline) = &step.spec else { continue };
        let prefix = format!("experiments[{i}].spec");
        for (path, message) in check_experiment(inline) {
            found.push((format!("{prefix}.{path}"), message));
        }
        if let Some(shared) = &spec.hypothesis {
            for probe in &shared.probes {
                if inline
                    .hypothesis
                    .probes
                    .iter()
                    .any(|p| p.name == probe.name)
                {
                    found.push((
                        format!("{prefix}.hypothesis.probes"),
                        format!(
                            "probe {:?} is also in the game day's shared hypothesis; rename one",
                            probe.name
                        ),
                    ));
                }
            }
        }
    }
    found
}

/// Problems in a drill schedule spec.
pub fn check_schedule(spec: &DrillScheduleSpec) -> Found {
    let mut found = Found::new();
    if let Err(err) = spec.schedule.parse::<croner::Cron>() {
        found.push((
            "schedule".into(),
            format!("{:?} is not a cron expression ({err}); for example \"0 9 1 1,4,7,10 *\" is quarterly", spec.schedule),
        ));
    }
    if let Some(zone) = &spec.time_zone
        && zone.parse::<chrono_tz::Tz>().is_err()
    {
        found.push((
            "timeZone".into(),
            format!("{zone:?} is not an IANA time zone name such as UTC or Asia/Seoul"),
        ));
    }
    for (path, message) in check_game_day(&spec.game_day) {
        found.push((format!("gameDay.{path}"), message));
    }
    found
}

fn check_hypothesis(hypothesis: &Hypothesis, path: &str, found: &mut Found) {
    if hypothesis.window < hypothesis.interval {
        found.push((
            format!("{path}.window"),
            format!(
                "window ({}) is shorter than interval ({}): not one sample would fit",
                hypothesis.window, hypothesis.interval
            ),
        ));
    }
    check_probes(&hypothesis.probes, &format!("{path}.probes"), found);
}

fn check_probes(probes: &[Probe], path: &str, found: &mut Found) {
    for (i, probe) in probes.iter().enumerate() {
        let here = format!("{path}[{i}]");
        let urls: Vec<(String, &str)> = match probe.kind() {
            None => {
                found.push((
                    here.clone(),
                    "a probe needs exactly one of prometheus, http, kubernetes or talk".into(),
                ));
                continue;
            }
            Some(ProbeKind::Prometheus(p)) => p
                .endpoints
                .iter()
                .enumerate()
                .map(|(j, e)| (format!("{here}.prometheus.endpoints[{j}]"), e.as_str()))
                .collect(),
            Some(ProbeKind::Http(h)) => vec![(format!("{here}.http.url"), h.url.as_str())],
            Some(ProbeKind::Talk(t)) => vec![(format!("{here}.talk.url"), t.url.as_str())],
            Some(ProbeKind::Kubernetes(k)) => {
                if k.condition.is_some() && k.min_ready_replicas.is_some() {
                    found.push((
                        format!("{here}.kubernetes"),
                        "give condition or minReadyReplicas, not both".into(),
                    ));
                }
                Vec::new()
            }
        };
        for (url_path, text) in urls {
            if let Err(why) = check_url(text) {
                found.push((url_path, why));
            }
        }
        let numeric = matches!(
            probe.kind(),
            Some(ProbeKind::Prometheus(_) | ProbeKind::Talk(_))
        );
        match (&probe.tolerance, numeric) {
            (None, true) => found.push((format!("{here}.tolerance"), "this probe measures a number and needs a tolerance, e.g. {op: \">=\", value: 0.99}".into())),
            (Some(t), _) if !t.value.is_finite() => found.push((format!("{here}.tolerance.value"), "must be a finite number".into())),
            _ => {}
        }
    }
}

fn check_url(text: &str) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|err| format!("{text:?} is not a URL: {err}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{text:?} must be an http:// or https:// URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{text:?} has no host"));
    }
    Ok(())
}

fn check_selector(selector: &LabelSelector, path: &str, found: &mut Found) {
    if selector.is_empty() {
        found.push((path.into(), "a selector must have matchLabels or matchExpressions: an empty selector would select everything".into()));
    }
    for (key, value) in &selector.match_labels {
        if !is_label_key(key) {
            found.push((
                format!("{path}.matchLabels"),
                format!("{key:?} is not a valid label key"),
            ));
        }
        if !is_label_value(value) {
            found.push((
                format!("{path}.matchLabels.{key}"),
                format!("{value:?} is not a valid label value"),
            ));
        }
    }
    for (i, req) in selector.match_expressions.iter().enumerate() {
        if !is_label_key(&req.key) {
            found.push((
                format!("{path}.matchExpressions[{i}].key"),
                format!("{:?} is not a valid label key", req.key),
            ));
        }
    }
}

/// `[prefix/]name` with a DNS subdomain prefix and a 63-character name.
fn is_label_key(key: &str) -> bool {
    let (prefix, name) = key.rsplit_once('/').unwrap_or(("", key));
    let prefix_ok = prefix.is_empty()
        || (prefix.len() <= 253 && prefix.split('.').all(crate::api::is_dns_label));
    prefix_ok && !name.is_empty() && is_label_value(name)
}

fn is_label_value(value: &str) -> bool {
    value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && value
            .bytes()
            .next()
            .is_none_or(|b| b.is_ascii_alphanumeric())
        && value
            .bytes()
            .last()
            .is_none_or(|b| b.is_ascii_alphanumeric())
}
