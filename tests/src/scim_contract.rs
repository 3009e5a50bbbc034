//! What every SCIM target userprov provisions must do with the SCIM connector, written once and
//! run against scim2-server and against the built-in mock target.
//!
//! Each step names what it checks; a failure says which step broke.

use serde_json::{Value, json};
use userprov_core::connector::{Connector, ConnectorError, MatchKey, TargetAccount};
use userprov_core::mapping::CORE_USER_SCHEMA;

pub const WORK_EMAIL: &str = r#"emails[type eq "work"].value"#;

pub fn key(attribute: &str, value: &str) -> MatchKey {
    MatchKey {
        attribute: attribute.to_owned(),
        value: value.to_owned(),
    }
}

/// A User resource as a mapping would build it.
pub fn user_resource(user_name: &str, work_email: &str, external_id: &str) -> Value {
    json!({
        "schemas": [CORE_USER_SCHEMA],
        "userName": user_name,
        "externalId": external_id,
        "name": {"givenName": "Marta", "familyName": "Fernandes"},
        "displayName": "Marta Fernandes",
        "emails": [
            {"type": "home", "value": format!("home.{work_email}")},
            {"type": "work", "value": work_email, "primary": true}
        ],
        "active": true
    })
}

async fn find_one(
    connector: &dyn Connector,
    keys: &[MatchKey],
    step: &str,
) -> Option<TargetAccount> {
    connector
        .find(keys)
        .await
        .unwrap_or_else(|e| panic!("{step}: find failed: {e:?}"))
        .value
}

async fn get_one(connector: &dyn Connector, id: &str, step: &str) -> Option<TargetAccount> {
    connector
        .get(id)
        .await
        .unwrap_or_else(|e| panic!("{step}: get failed: {e:?}"))
        .value
}

/// Create, find (by userName, by work email, by several keys), refuse a duplicate, update,
/// deactivate, reactivate, delete. `unique` keeps runs apart on a shared target.
pub async fn user_lifecycle(connector: &dyn Connector, unique: &str) {
    let user_name = format!("Marta.Fernandes+{unique}@Acme.example");
    let work_email = format!("marta.fernandes+{unique}@acme.example");
    let external_id = format!("0058a00000LmN2pAAF-{unique}");
    let resource = user_resource(&user_name, &work_email, &external_id);

    let before = find_one(
        connector,
        &[key("userName", &user_name)],
        "find before create",
    )
    .await;
    assert_eq!(before, None, "find before create: nothing should match yet");

    let created = connector.create(&resource).await.expect("create");
    assert_eq!(created.http_status, Some(201), "create answers 201");
    let id = created.value.id.clone();
    assert!(!id.is_empty(), "create returns the new id");
    assert_eq!(
        created.value.active,
        Some(true),
        "create returns the active flag"
    );
    assert_eq!(
        created.value.resource["userName"],
        json!(user_name),
        "create returns the resource"
    );

    let by_name = find_one(
        connector,
        &[key("userName", &user_name.to_lowercase())],
        "find by userName",
    )
    .await;
    assert_eq!(
        by_name.map(|a| a.id),
        Some(id.clone()),
        "find by userName, in another case"
    );

    let by_email = find_one(
        connector,
        &[key(WORK_EMAIL, &work_email.to_uppercase())],
        "find by work email",
    )
    .await;
    assert_eq!(
        by_email.map(|a| a.id),
        Some(id.clone()),
        "find by the work email, in another case"
    );

    let home_as_work = find_one(
        connector,
        &[key(WORK_EMAIL, &format!("home.{work_email}"))],
        "home email",
    )
    .await;
    assert_eq!(home_as_work, None, "the home email is not the work email");

    let both = [key("userName", &user_name), key("externalId", &external_id)];
    let by_both = find_one(connector, &both, "find by userName and externalId").await;
    assert_eq!(
        by_both.map(|a| a.id),
        Some(id.clone()),
        "find by userName and externalId"
    );

    let mismatch = [
        key("userName", &user_name),
        key("externalId", "0058a00000ZZZZZAAA"),
    ];
    let by_mismatch = find_one(connector, &mismatch, "find with a mismatching second key").await;
    assert_eq!(
        by_mismatch, None,
        "every key must match, not just the filtered one"
    );

    let duplicate = user_resource(
        &user_name.to_uppercase(),
        &work_email,
        &format!("{external_id}-2"),
    );
    match connector.create(&duplicate).await {
        Err(ConnectorError::Conflict { .. }) => {}
        other => panic!("a duplicate userName must be a Conflict, got {other:?}"),
    }

    let mut changed = resource.clone();
    changed["displayName"] = json!("Marta F. Fernandes");
    changed["title"] = json!("Account Executive");
    let updated = connector.update(&id, &changed).await.expect("update");
    assert!(
        matches!(updated.http_status, Some(200 | 204)),
        "update answers 200 or 204: {updated:?}"
    );
    let after_update = get_one(connector, &id, "get after update")
        .await
        .expect("the account exists after update");
    assert_eq!(
        after_update.resource["displayName"],
        json!("Marta F. Fernandes"),
        "update replaced displayName"
    );
    assert_eq!(
        after_update.resource["title"],
        json!("Account Executive"),
        "update added title"
    );
    assert_eq!(
        after_update.active,
        Some(true),
        "update kept the account active"
    );

    connector.set_active(&id, false).await.expect("deactivate");
    let deactivated = get_one(connector, &id, "get after deactivate")
        .await
        .expect("exists after deactivate");
    assert_eq!(
        deactivated.active,
        Some(false),
        "deactivate sets active false"
    );
    assert_eq!(
        deactivated.resource["displayName"],
        json!("Marta F. Fernandes"),
        "deactivate keeps attributes"
    );
    let still_found = find_one(
        connector,
        &[key("userName", &user_name)],
        "find a deactivated account",
    )
    .await;
    assert_eq!(
        still_found.map(|a| (a.id, a.active)),
        Some((id.clone(), Some(false))),
        "a deactivated account is found"
    );

    connector.set_active(&id, true).await.expect("reactivate");
    let reactivated = get_one(connector, &id, "get after reactivate")
        .await
        .expect("exists after reactivate");
    assert_eq!(
        reactivated.active,
        Some(true),
        "reactivate sets active true"
    );

    let deleted = connector.delete(&id).await.expect("delete");
    assert!(
        matches!(deleted.http_status, Some(200 | 204)),
        "delete answers 200 or 204: {deleted:?}"
    );
    assert_eq!(
        get_one(connector, &id, "get after delete").await,
        None,
        "a deleted account is gone"
    );
    assert_eq!(
        find_one(
            connector,
            &[key("userName", &user_name)],
            "find after delete"
        )
        .await,
        None
    );

    let not_found = |step: &str, result: Result<_, ConnectorError>| match result {
        Err(ConnectorError::NotFound { id: missing }) => {
            assert_eq!(missing, id, "{step}: NotFound names the id")
        }
        other => panic!("{step} of a deleted account must be NotFound, got {other:?}"),
    };
    not_found("delete", connector.delete(&id).await);
    not_found("update", connector.update(&id, &changed).await);
    not_found("set_active", connector.set_active(&id, false).await);
}

/// Names with quotes and backslashes are found exactly: the filter is escaped, not injected.
pub async fn awkward_names_are_found_exactly(connector: &dyn Connector, unique: &str) {
    let names = [
        format!("o\"neil\\x+{unique}"),
        format!("o\"neil\\y+{unique}"),
        format!("o\"neil\" or userName pr or \"+{unique}"),
    ];
    let mut ids = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let resource = user_resource(
            name,
            &format!("awkward{i}+{unique}@acme.example"),
            &format!("awkward{i}-{unique}"),
        );
        ids.push(
            connector
                .create(&resource)
                .await
                .unwrap_or_else(|e| panic!("create {name:?}: {e:?}"))
                .value
                .id,
        );
    }
    for (name, id) in names.iter().zip(&ids) {
        let found = find_one(connector, &[key("userName", name)], "find an awkward name").await;
        assert_eq!(found.map(|a| a.id), Some(id.clone()), "find {name:?}");
    }
    let prefix_only = find_one(connector, &[key("userName", "o\"neil")], "find a prefix").await;
    assert_eq!(
        prefix_only, None,
        "a prefix of the names matches none of them"
    );
    for id in &ids {
        connector.delete(id).await.expect("clean up");
    }
}
