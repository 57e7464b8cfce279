//! Workloads the controller manager drives, on a lab node with the built-in runtime: a Job
//! whose pods complete (`kubectl get pods` says `Completed`) until the Job is Complete, and
//! a Deployment whose pods have an init container that completes before the app starts.

use crate::support::{Agent, cluster, eventually_with};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use std::time::Duration;

fn terminated(c: &ContainerStatus) -> Option<(i32, String)> {
    let t = c.state.as_ref()?.terminated.as_ref()?;
    Some((t.exit_code, t.reason.clone().unwrap_or_default()))
}

#[tokio::test]
async fn a_job_completes_and_a_deployment_with_an_init_container_runs() {
    let admin = cluster().admin().await.expect("admin client");
    let mut agent = Agent::new("e2e-workloads").await;
    agent.start();
    agent.wait_ready(&Api::<Node>::all(admin.clone())).await;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");

    // kubectl create job: three completions, one after another.
    let jobs: Api<Job> = Api::namespaced(admin.clone(), "default");
    let job: Job = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "batch"},
        "spec": {"completions": 3, "backoffLimit": 0, "template": {"spec": {
            "nodeSelector": {"e2e": "e2e-workloads"},
            "restartPolicy": "Never",
            "containers": [{"name": "work", "image": "busybox:1.36", "command": ["sh", "-c", "echo done"]}],
        }}},
    }))
    .expect("a job");
    jobs.create(&PostParams::default(), &job).await.expect("create the job");
    let done = eventually_with(&mut agent, "the Job Complete with 3 succeeded", Duration::from_secs(180), async || {
        let status = jobs.get("batch").await.ok()?.status?;
        let complete = status.conditions.iter().flatten().any(|c| c.type_ == "Complete" && c.status == "True");
        (complete && status.succeeded == Some(3)).then_some(status)
    })
    .await;
    assert_eq!(done.failed, None, "no pod of the Job failed: {done:?}");
    let job_pods = pods.list(&ListParams::default().labels("job-name=batch")).await.expect("the Job's pods").items;
    assert_eq!(job_pods.len(), 3, "one pod per completion");
    for pod in &job_pods {
        let status = pod.status.clone().unwrap_or_default();
        assert_eq!(status.phase.as_deref(), Some("Succeeded"), "kubectl get pods: Completed");
        let work = status.container_statuses.iter().flatten().next().and_then(terminated);
        assert_eq!(work, Some((0, "Completed".to_string())), "{:?}", pod.metadata.name);
    }

    // A Deployment whose pods run an init container first.
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), "default");
    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "nodeSelector": {"e2e": "e2e-workloads"},
                "initContainers": [{"name": "migrate", "image": "busybox:1.36", "command": ["sh", "-c", "echo migrated"]}],
                "containers": [{"name": "app", "image": "nginx:1.25"}],
            },
        }},
    }))
    .expect("a deployment");
    deployments.create(&PostParams::default(), &deployment).await.expect("create the deployment");
    eventually_with(&mut agent, "the Deployment's 2 replicas available", Duration::from_secs(120), async || {
        let status = deployments.get("web").await.ok()?.status?;
        (status.available_replicas == Some(2)).then_some(())
    })
    .await;
    let web = pods.list(&ListParams::default().labels("app=web")).await.expect("the Deployment's pods").items;
    assert_eq!(web.len(), 2);
    for pod in &web {
        let status = pod.status.clone().unwrap_or_default();
        assert_eq!(status.phase.as_deref(), Some("Running"));
        let init = status.init_container_statuses.iter().flatten().next().expect("the init container's status");
        assert_eq!(terminated(init), Some((0, "Completed".to_string())), "kubectl describe pod: migrate Terminated, Completed");
        assert!(init.ready, "a completed init container is ready");
        let initialized = status.conditions.iter().flatten().find(|c| c.type_ == "Initialized").map(|c| c.status.clone());
        assert_eq!(initialized.as_deref(), Some("True"));
    }
    agent.assert_no_refused_requests();
}
