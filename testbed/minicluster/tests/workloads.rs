//! StatefulSets, Services, Jobs and CronJobs on one site, with real local processes.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::collections::HashSet;
use std::time::Duration;

use pgdr_minicluster::api::{self, obj_name};
use pgdr_minicluster::testing::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_pods_get_addresses_become_ready_and_a_service_routes_to_them() {
    let site = site("gold").await;
    let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {"replicas": 2, "serviceName": "web", "podManagementPolicy": "Parallel",
                 "selector": {"matchLabels": {"app": "web"}}, "template": web_template("web")}});
    site.api().create(api::STATEFULSETS, NS, &sts).unwrap();
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": NS},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}});
    site.api().create(api::SERVICES, NS, &svc).unwrap();

    let pods = site
        .wait_for("2 ready pods", Duration::from_secs(30), |a| {
            let pods = a.list(api::PODS, Some(NS)).ok()?;
            (pods.len() == 2 && pods.iter().all(ready)).then_some(pods)
        })
        .await
        .unwrap();
    let ips: HashSet<&str> = pods
        .iter()
        .map(|p| p["status"]["podIP"].as_str().unwrap())
        .collect();
    assert_eq!(ips.len(), 2, "distinct pod IPs: {ips:?}");
    for p in &pods {
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");
        assert!(p["status"]["containerStatuses"][0]["state"]["running"].is_object());
    }
    let names: HashSet<&str> = pods.iter().map(obj_name).collect();
    assert_eq!(names, HashSet::from(["web-0", "web-1"]));

    // The Endpoints follow the ready pods, and the ClusterIP routes to both.
    site.wait_for("endpoints with 2 addresses", Duration::from_secs(10), |a| {
        let ep = a.get(api::ENDPOINTS, NS, "web").ok()??;
        (ep["subsets"][0]["addresses"].as_array()?.len() == 2
            && ep["subsets"][0]["ports"][0]["port"] == 8000)
            .then_some(())
    })
    .await
    .unwrap();
    let ip = site.get(api::SERVICES, "web").unwrap()["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    let mut seen = HashSet::new();
    for _ in 0..6 {
        seen.insert(
            get_text(&format!("http://{ip}/name"))
                .await
                .expect("service answers"),
        );
    }
    assert_eq!(
        seen,
        HashSet::from(["web-0".to_string(), "web-1".to_string()])
    );
    let sts = site.get(api::STATEFULSETS, "web").unwrap();
    assert_eq!(sts["status"]["readyReplicas"], 2);
    assert_eq!(
        sts["status"]["currentRevision"],
        sts["status"]["updateRevision"]
    );

    // Scale down: web-1 goes, its process with it.
    let log = site.log_path(NS, "web-1", "web");
    site.api()
        .patch(
            api::STATEFULSETS,
            NS,
            "web",
            &json!({"spec": {"replicas": 1}}),
        )
        .unwrap();
    site.wait_for("one pod", Duration::from_secs(15), |a| {
        (a.list(api::PODS, Some(NS)).ok()?.len() == 1).then_some(())
    })
    .await
    .unwrap();
    let one_ip = pods.iter().find(|p| obj_name(p) == "web-1").unwrap()["status"]["podIP"]
        .as_str()
        .unwrap()
        .to_string();
    site.wait_for("web-1's server to stop", Duration::from_secs(15), |_| {
        std::net::TcpStream::connect((one_ip.as_str(), 8000))
            .is_err()
            .then_some(())
    })
    .await
    .unwrap();
    assert!(!log.exists(), "pod files are removed with the pod");

    // Deleting the StatefulSet deletes its pods (ownerReferences).
    site.api().delete(api::STATEFULSETS, NS, "web").unwrap();
    site.wait_for("no pods", Duration::from_secs(15), |a| {
        a.list(api::PODS, Some(NS)).ok()?.is_empty().then_some(())
    })
    .await
    .unwrap();
    site.shutdown().await;
}

fn job(name: &str, script: &str, backoff: u32) -> serde_json::Value {
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": NS},
        "spec": {"backoffLimit": backoff, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "main", "image": "sh", "command": ["sh", "-c", script],
                            "env": [{"name": "ME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}]}}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_complete_or_fail_after_the_backoff_limit() {
    let site = site("gold").await;
    site.api()
        .create(api::JOBS, NS, &job("ok", "echo hello from $ME", 0))
        .unwrap();
    site.api()
        .create(api::JOBS, NS, &job("bad", "exit 3", 1))
        .unwrap();
    let ok = site
        .wait_for("job ok to complete", Duration::from_secs(20), |a| {
            let j = a.get(api::JOBS, NS, "ok").ok()??;
            cond(&j, "Complete").then_some(j)
        })
        .await
        .unwrap();
    assert_eq!(ok["status"]["succeeded"], 1);
    let bad = site
        .wait_for("job bad to fail", Duration::from_secs(30), |a| {
            let j = a.get(api::JOBS, NS, "bad").ok()??;
            cond(&j, "Failed").then_some(j)
        })
        .await
        .unwrap();
    assert_eq!(bad["status"]["failed"], 2, "backoffLimit 1: two attempts");
    assert!(!cond(&bad, "Complete"));
    let pods = items(&site, api::PODS);
    let ok_pod = pods
        .iter()
        .find(|p| p["metadata"]["labels"]["job-name"] == "ok")
        .unwrap();
    assert_eq!(ok_pod["status"]["phase"], "Succeeded");
    let log = std::fs::read_to_string(site.log_path(NS, obj_name(ok_pod), "main")).unwrap();
    assert_eq!(log.trim(), format!("hello from {}", obj_name(ok_pod)));
    let bad_pods: Vec<_> = pods
        .iter()
        .filter(|p| p["metadata"]["labels"]["job-name"] == "bad")
        .collect();
    assert_eq!(bad_pods.len(), 2);
    for p in bad_pods {
        assert_eq!(p["status"]["phase"], "Failed");
        assert_eq!(
            p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
            3
        );
    }
    // Deleting a Job deletes its pods.
    site.api().delete(api::JOBS, NS, "bad").unwrap();
    site.wait_for("bad's pods gone", Duration::from_secs(10), |a| {
        let pods = a.list(api::PODS, Some(NS)).ok()?;
        (!pods
            .iter()
            .any(|p| p["metadata"]["labels"]["job-name"] == "bad"))
        .then_some(())
    })
    .await
    .unwrap();
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cronjob_fires_on_schedule_and_forbid_prevents_overlap() {
    let site = site_with("golddr", every(1), false).await;
    // Each run takes ~2.5 s while the schedule fires every second: with Forbid, runs never
    // overlap and most fires are skipped.
    let cj = json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick", "namespace": NS},
        "spec": {"schedule": "* * * * *", "concurrencyPolicy": "Forbid", "successfulJobsHistoryLimit": 2,
          "jobTemplate": {"spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "main", "image": "sh", "command": ["sh", "-c", "sleep 2.5"]}]}}}}}});
    site.api().create(api::CRONJOBS, NS, &cj).unwrap();
    let start = tokio::time::Instant::now();
    let mut max_active = 0;
    let mut names = HashSet::new();
    while start.elapsed() < Duration::from_secs(10) {
        let jobs = items(&site, api::JOBS);
        let active = jobs
            .iter()
            .filter(|j| !cond(j, "Complete") && !cond(j, "Failed"))
            .count();
        max_active = max_active.max(active);
        names.extend(jobs.iter().map(|j| obj_name(j).to_string()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(max_active, 1, "Forbid: one Job at a time");
    assert!(
        (2..=4).contains(&names.len()),
        "about one run per 3 s in 10 s, got {names:?}"
    );
    let jobs = items(&site, api::JOBS);
    assert!(
        jobs.iter().filter(|j| cond(j, "Complete")).count() <= 2,
        "history limit"
    );
    let cj = site.get(api::CRONJOBS, "tick").unwrap();
    assert!(cj["status"]["lastScheduleTime"].is_string());
    assert!(cj["status"]["lastSuccessfulTime"].is_string());

    // Suspended: no new Jobs.
    site.api()
        .patch(
            api::CRONJOBS,
            NS,
            "tick",
            &json!({"spec": {"suspend": true}}),
        )
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before: HashSet<String> = items(&site, api::JOBS)
        .iter()
        .map(|j| obj_name(j).to_string())
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after: HashSet<String> = items(&site, api::JOBS)
        .iter()
        .map(|j| obj_name(j).to_string())
        .collect();
    assert!(
        after.is_subset(&before),
        "suspended CronJob created {:?}",
        after.difference(&before)
    );
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_that_loses_power_comes_back_with_its_objects_and_starts_its_pods_again() {
    let mut site = site("gold").await;
    let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {"replicas": 1, "serviceName": "web",
                 "selector": {"matchLabels": {"app": "web"}}, "template": web_template("web")}});
    site.api().create(api::STATEFULSETS, NS, &sts).unwrap();
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": NS},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}});
    site.api().create(api::SERVICES, NS, &svc).unwrap();
    let ready_pod = |a: &api::Api| {
        let pods = a.list(api::PODS, Some(NS)).ok()?;
        (pods.len() == 1 && pods.iter().all(ready)).then(|| pods[0].clone())
    };
    let before = site
        .wait_for("a ready pod", Duration::from_secs(30), ready_pod)
        .await
        .unwrap();
    let pod_ip = before["status"]["podIP"].as_str().unwrap().to_string();
    let api_addr = site.server().addr();

    site.power_off();
    assert!(site.is_off());
    // Nothing runs: the pod's server, the API server's port.
    site.wait_for("web-0's server to stop", Duration::from_secs(10), |_| {
        std::net::TcpStream::connect((pod_ip.as_str(), 8000))
            .is_err()
            .then_some(())
    })
    .await
    .unwrap();
    assert!(
        get_text(&format!("{}/api/v1/namespaces/{NS}/pods", site.url()))
            .await
            .is_none(),
        "the API server answered at {api_addr} while powered off"
    );
    let survivors = pgdr_minicluster::procs::survivors_under(site.dir());
    assert!(survivors.is_empty(), "processes survived: {survivors:?}");

    site.power_on().unwrap();
    // The same pod object (etcd kept it), started again by the new kubelet.
    let after = site
        .wait_for("the pod ready again", Duration::from_secs(30), |a| {
            let p = ready_pod(a)?;
            let ip = p["status"]["podIP"].as_str()?;
            std::net::TcpStream::connect((ip, 8000)).ok()?;
            Some(p)
        })
        .await
        .unwrap();
    assert_eq!(after["metadata"]["uid"], before["metadata"]["uid"]);
    let ip = site.get(api::SERVICES, "web").unwrap()["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    let mut answered = None;
    for _ in 0..50 {
        answered = get_text(&format!("http://{ip}/name")).await;
        if answered.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(answered.as_deref(), Some("web-0"));
    assert!(
        get_text(&format!("{}/api/v1/namespaces/{NS}/pods", site.url()))
            .await
            .is_some(),
        "the API server refuses after power-on"
    );
    site.shutdown().await;
}
