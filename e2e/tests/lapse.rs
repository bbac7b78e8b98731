//! A held fault that someone undoes is noticed, put back and counted: mid-partition, the
//! test deletes firedrill's nftables table in one partitioned pod's namespace. The node's
//! agent must find it gone at its next re-check, re-apply it and report the lapse; the
//! operator must carry it into the Experiment's `faultCheck`, and the verdict must follow
//! the rule: a lapse longer than the sample interval cannot pass.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{
    agent_image, catalog_experiment, chains_in_pod, completed, eventually_every,
    firedrill_and_talk, holding, injections_of, nft_in_pod, nodes, note, nothing_left, report,
    talk_delivering, talk_namespace, verdict_follows_lapses, with_temp_ns,
};
use firedrill_core::api::Experiment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;

#[tokio::test]
async fn rules_deleted_mid_partition_are_put_back_and_the_lapse_is_counted() {
    let test = "rules_deleted_mid_partition_are_put_back_and_the_lapse_is_counted";
    let Some(client) = firedrill_and_talk(test).await else {
        return;
    };
    talk_delivering(&client).await;
    let image = agent_image(&client).await;
    with_temp_ns(&client, "lapse", move |client, ns| async move {
        let nodes = nodes(&client).await;
        let exp = catalog_experiment("network-partition.yaml", &ns, &talk_namespace());
        let interval_ms = exp.spec.hypothesis.interval.to_chrono().num_milliseconds() as f64;
        let api: Api<Experiment> = Api::namespaced(client.clone(), &ns);
        let t0 = Instant::now();
        let created = api.create(&PostParams::default(), &exp).await.unwrap();
        let uid = kube::ResourceExt::uid(&created).unwrap();
        let name = kube::ResourceExt::name_any(&created);
        holding(&api, &name).await;

        // One pod whose sandbox got the partition's rules.
        let injections = injections_of(&client, &ns).await;
        let target = injections
            .iter()
            .filter_map(|i| i.spec.action.network.as_ref())
            .find_map(|cut| cut.pods.first())
            .expect("a partition Injection naming pods")
            .clone();
        let pods: Api<Pod> = Api::namespaced(client.clone(), &target.namespace);
        let pod = pods.get(&target.name).await.unwrap();
        assert!(!chains_in_pod(&client, &pod, &image).await.is_empty());
        nft_in_pod(
            &client,
            &pod,
            &image,
            &["delete", "table", "inet", "firedrill"],
        )
        .await;
        note(format!(
            "{test}: +{:.1}s deleted firedrill's table in {}/{}",
            t0.elapsed().as_secs_f64(),
            target.namespace,
            target.name
        ));

        // Put back by the agent, and reported.
        let back = eventually_every(Duration::from_secs(30), Duration::from_secs(1), || async {
            let chains = chains_in_pod(&client, &pod, &image).await;
            (!chains.is_empty()).then_some(chains)
        })
        .await;
        assert!(back.is_some(), "the agent did not put the rules back");
        let reported =
            eventually_every(Duration::from_secs(30), Duration::from_secs(1), || async {
                injections_of(&client, &ns)
                    .await
                    .into_iter()
                    .filter_map(|i| i.status)
                    .flat_map(|s| s.lapses)
                    .find(|l| l.healed_at.is_some())
            })
            .await;
        let lapse = reported.expect("no healed lapse in any Injection's status");
        assert!(lapse.what.contains("re-applied"), "{lapse:?}");
        assert!(lapse.since <= lapse.seen_at);

        let done = completed(&api, &name).await;
        let status = done.status.unwrap_or_default();
        report(test, t0, &status);
        nothing_left(&client, test, &ns, &[uid], &nodes, &image, t0).await;
        let check = status
            .fault_check
            .clone()
            .expect("a faultCheck in the status");
        assert!(check.lapses >= 1, "{check:?}");
        assert!(
            check
                .last_lapse
                .as_deref()
                .is_some_and(|w| w.contains("re-applied")),
            "{check:?}"
        );
        note(format!(
            "{test}: lapse measured {:.2}s (sample interval {interval_ms} ms), verdict {:?}",
            check.longest_lapse_seconds, status.verdict
        ));
        verdict_follows_lapses(&status, interval_ms);
    })
    .await;
}
