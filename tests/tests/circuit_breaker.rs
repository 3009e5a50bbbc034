//! The circuit breaker through the embedded stack (`userprov serve`'s own stack) against
//! scim2-server behind the fault proxy: while the target answers 503, the app is paused and its
//! jobs wait on the queue instead of using up their attempts; once the target is back,
//! everything is applied and nothing is lost.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use userprov_tests::fault_proxy::FaultProxy;
use userprov_tests::peers::scim2_server::Scim2Server;
use userprov_tests::pipeline::{
    Notified, ORG_ID, TestStack, config_for, outbound_message, scim_users,
};

const USERS: usize = 20;

fn user_id(i: usize) -> String {
    format!("0058a00000C{i:04}")
}

fn username(i: usize) -> String {
    format!("breaker{i}@acme.example")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_target_down_for_longer_than_all_retries_pauses_the_app_and_nothing_is_lost() {
    let scim = Scim2Server::shared();
    let tenant = format!("breaker-{}", ulid::Ulid::new().to_string().to_lowercase());
    let proxy = FaultProxy::start(&scim.tenant_url(&tenant)).await;
    // Four attempts with backoff capped at 1 s last about 2 s: without the breaker, an outage
    // of several seconds would dead-letter every job.
    let config = config_for(
        &proxy.url(),
        "circuit_breaker = { min_calls = 3, failure_rate = 0.5, window_secs = 60, cool_down_secs = 1 }",
        "",
    );
    let stack = TestStack::start(&config, &[("userprov/scim", &scim.token)]).await;
    proxy.set_outage(Some(503));

    let ids: Vec<String> = (0..USERS).map(user_id).collect();
    let names: Vec<String> = (0..USERS).map(username).collect();
    let notification_ids: Vec<String> = (0..USERS).map(|i| format!("04l8a00000B{i:04}")).collect();
    let fields: Vec<Vec<(&str, &str)>> = (0..USERS)
        .map(|i| {
            vec![
                ("Username", names[i].as_str()),
                ("FirstName", "Bea"),
                ("LastName", "Breaker"),
                ("Email", names[i].as_str()),
                ("IsActive", "true"),
                ("SystemModstamp", "2025-03-01T10:00:00.000Z"),
            ]
        })
        .collect();
    let notified: Vec<Notified<'_>> = (0..USERS)
        .map(|i| Notified {
            notification_id: &notification_ids[i],
            user_id: &ids[i],
            fields: &fields[i],
        })
        .collect();
    let (status, body) = stack
        .post_outbound(&outbound_message(ORG_ID, &notified))
        .await;
    assert_eq!(status, 200, "{body}");

    // The outage begins with the first calls, and lasts 6 s: three times what every job's
    // four attempts take without a breaker.
    let failed_calls = || proxy.seen().iter().filter(|(_, _, s)| *s == 503).count();
    let mut waited = 0;
    while failed_calls() < 3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
        assert!(
            waited < 600,
            "no call reached the target: {:?}",
            proxy.seen()
        );
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    let during = stack.stack.queue.depth().await.unwrap();
    assert_eq!(
        during.dead_lettered, 0,
        "a job was dead-lettered during the outage"
    );
    assert_eq!(
        during.visible + during.in_flight + during.delayed,
        USERS as u64,
        "every job waits on the queue: {during:?}"
    );
    let failed_so_far = failed_calls();
    // Each job's first call may be out before the circuit opens; after that only probes go.
    assert!(
        failed_so_far < 2 * USERS,
        "the paused app kept calling its target: {failed_so_far} failed calls for {USERS} jobs"
    );
    let entries = stack.log_entries("app=scim").await;
    assert!(
        entries
            .iter()
            .all(|e| e["status"] == "retrying" && e["attempt"].as_u64() < Some(4)),
        "only retries of the calls made before the circuit opened: {entries:#?}"
    );

    proxy.set_outage(None);
    stack.wait_idle().await;

    assert!(
        stack.queue_is_empty().await,
        "nothing is left or dead-lettered"
    );
    for (i, name) in names.iter().enumerate() {
        let accounts = scim_users(&scim.tenant_url(&tenant), &scim.token, Some(name)).await;
        assert_eq!(accounts.len(), 1, "one account for {name}: {accounts:?}");
        let log = stack
            .log_entries(&format!("app=scim&user={}", ids[i]))
            .await;
        let last = log.last().unwrap();
        assert_eq!(
            (last["operation"].as_str(), last["status"].as_str()),
            (Some("create"), Some("success")),
            "{log:#?}"
        );
    }
    stack.shutdown().await;
}
