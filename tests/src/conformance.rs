//! The connector conformance kit: what every [`Connector`] must do, whatever the protocol,
//! checked against a real target. A custom connector runs it from a test of its own:
//!
//! ```ignore
//! conformance::run(&Subject {
//!     connector: &|| Arc::new(MyConnector::new(...)),
//!     new_account: &|tag| json!({"email": format!("{tag}@acme.example"), "active": true}),
//!     match_attribute: "email",
//!     changed_attribute: "title",
//!     has_delete: true,
//!     group_members: None, // or Some(&|group_id| Box::pin(read_members_from_the_target(group_id)))
//! }, "my-connector").await;
//! ```
//!
//! Each check names itself; a failure says which one broke and what came back.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::{Value, json};
use userprov_core::connector::{Connector, ConnectorError, GroupOptions, MatchKey, TargetAccount};
use userprov_core::mapping::TargetPath;

/// A connector to test and the shape of the accounts it manages.
pub struct Subject<'a> {
    /// Makes a connector to the target. It is called more than once: a second instance must
    /// see what the first did (no state kept in the connector).
    pub connector: &'a dyn Fn() -> Arc<dyn Connector>,
    /// The resource of a new, active account, as the app's mapping would build it; `tag` is
    /// unique per account and should be in its identifying attribute.
    pub new_account: &'a dyn Fn(&str) -> Value,
    /// The attribute (a mapping target path) that identifies an account: a `match_on` key.
    pub match_attribute: &'a str,
    /// A top-level text attribute that an update changes.
    pub changed_attribute: &'a str,
    /// Whether the connector is configured to delete accounts.
    pub has_delete: bool,
    /// For a connector that manages group memberships: reads a group's member ids straight
    /// from the target (not through the connector), so the group checks see what really
    /// happened. `None` skips the group checks.
    pub group_members: Option<&'a MembersOf<'a>>,
}

/// Reads the member ids of the group with this id from the target.
pub type MembersOf<'a> =
    dyn Fn(String) -> Pin<Box<dyn Future<Output = Vec<String>> + Send>> + Sync + 'a;

/// What each check saw, for a report.
#[derive(Debug, Default)]
pub struct Report {
    pub checks: Vec<&'static str>,
}

fn key(attribute: &str, value: &str) -> MatchKey {
    MatchKey {
        attribute: attribute.to_owned(),
        value: value.to_owned(),
    }
}

async fn found(connector: &dyn Connector, keys: &[MatchKey], check: &str) -> Option<TargetAccount> {
    connector
        .find(keys)
        .await
        .unwrap_or_else(|e| panic!("{check}: find failed: {e:?}"))
        .value
}

async fn got(connector: &dyn Connector, id: &str, check: &str) -> Option<TargetAccount> {
    connector
        .get(id)
        .await
        .unwrap_or_else(|e| panic!("{check}: get failed: {e:?}"))
        .value
}

fn expect_not_found<T: std::fmt::Debug>(check: &str, id: &str, result: Result<T, ConnectorError>) {
    match result {
        Err(ConnectorError::NotFound { id: missing }) => {
            assert_eq!(missing, id, "{check}: NotFound names the id")
        }
        other => panic!("{check}: expected NotFound for {id:?}, got {other:?}"),
    }
}

/// Runs every check; `tag` keeps runs apart on a shared target. Panics at the first failure.
pub async fn run(subject: &Subject<'_>, tag: &str) -> Report {
    let mut report = Report::default();
    let connector = (subject.connector)();
    let other_instance = (subject.connector)();
    let resource = (subject.new_account)(&format!("{tag}-a"));
    let path = TargetPath::parse(subject.match_attribute)
        .unwrap_or_else(|e| panic!("match_attribute {:?}: {e}", subject.match_attribute));
    let identity = match path.read(&resource) {
        Some(Value::String(s)) => s.clone(),
        other => panic!(
            "new_account must hold a text {:?}, it holds {other:?}",
            subject.match_attribute
        ),
    };
    let by_identity = [key(subject.match_attribute, &identity)];

    let check = "find before create finds nothing";
    assert_eq!(
        found(connector.as_ref(), &by_identity, check).await,
        None,
        "{check}"
    );
    report.checks.push(check);

    let check = "create returns the new id, active";
    let created = connector
        .create(&resource)
        .await
        .unwrap_or_else(|e| panic!("{check}: {e:?}"));
    let id = created.value.id.clone();
    assert!(!id.trim().is_empty(), "{check}: empty id");
    assert_eq!(created.value.active, Some(true), "{check}: {created:?}");
    report.checks.push(check);

    let check = "find by the identifying attribute finds the account (another instance too)";
    for instance in [&connector, &other_instance] {
        let account = found(instance.as_ref(), &by_identity, check).await;
        assert_eq!(
            account.as_ref().map(|a| (a.id.as_str(), a.active)),
            Some((id.as_str(), Some(true))),
            "{check}"
        );
    }
    report.checks.push(check);

    let check = "every key is verified on the hits (a second, different key matches nothing)";
    let mismatched = [
        key(subject.match_attribute, &identity),
        key(subject.match_attribute, &format!("{identity}.other")),
    ];
    assert_eq!(
        found(connector.as_ref(), &mismatched, check).await,
        None,
        "{check}"
    );
    let unknown = [key(subject.match_attribute, &format!("nobody.{identity}"))];
    assert_eq!(
        found(connector.as_ref(), &unknown, check).await,
        None,
        "{check}"
    );
    report.checks.push(check);

    let check = "get reads the account with its attributes";
    let account = got(connector.as_ref(), &id, check)
        .await
        .unwrap_or_else(|| panic!("{check}: the new account is missing"));
    assert_eq!(account.id, id, "{check}");
    assert_eq!(
        path.read(&account.resource),
        Some(&json!(identity)),
        "{check}"
    );
    report.checks.push(check);

    let check = "creating the same account again is a Conflict (409)";
    match other_instance.create(&resource).await {
        Err(ConnectorError::Conflict { .. }) => {}
        other => panic!("{check}: got {other:?}"),
    }
    report.checks.push(check);

    let check = "update changes the attribute and keeps the account active; twice is harmless";
    let mut changed = resource.clone();
    changed[subject.changed_attribute] = json!(format!("Changed by {tag}"));
    for round in 0..2 {
        connector
            .update(&id, &changed)
            .await
            .unwrap_or_else(|e| panic!("{check} (round {round}): {e:?}"));
        let account = got(connector.as_ref(), &id, check)
            .await
            .unwrap_or_else(|| panic!("{check}: the account is gone"));
        assert_eq!(
            account.resource.get(subject.changed_attribute),
            Some(&json!(format!("Changed by {tag}"))),
            "{check} (round {round}): {account:?}"
        );
        assert_eq!(account.active, Some(true), "{check} (round {round})");
    }
    report.checks.push(check);

    let check = "deactivate sets active false, keeps attributes, and is idempotent";
    for round in 0..2 {
        connector
            .set_active(&id, false)
            .await
            .unwrap_or_else(|e| panic!("{check} (round {round}): {e:?}"));
        let account = got(connector.as_ref(), &id, check)
            .await
            .unwrap_or_else(|| panic!("{check}: the account is gone"));
        assert_eq!(account.active, Some(false), "{check} (round {round})");
        assert_eq!(
            account.resource.get(subject.changed_attribute),
            Some(&json!(format!("Changed by {tag}"))),
            "{check} (round {round}): attributes kept"
        );
    }
    let still = found(connector.as_ref(), &by_identity, check).await;
    assert_eq!(
        still.map(|a| (a.id, a.active)),
        Some((id.clone(), Some(false))),
        "{check}: a deactivated account is still found"
    );
    report.checks.push(check);

    let check = "reactivate sets active true and is idempotent";
    for round in 0..2 {
        other_instance
            .set_active(&id, true)
            .await
            .unwrap_or_else(|e| panic!("{check} (round {round}): {e:?}"));
        let account = got(connector.as_ref(), &id, check)
            .await
            .unwrap_or_else(|| panic!("{check}: the account is gone"));
        assert_eq!(account.active, Some(true), "{check} (round {round})");
    }
    report.checks.push(check);

    let check = "an unknown id is absent for get and NotFound (404) for changes";
    let missing = format!("no-such-account-{tag}");
    assert_eq!(
        got(connector.as_ref(), &missing, check).await,
        None,
        "{check}"
    );
    expect_not_found(check, &missing, connector.update(&missing, &changed).await);
    expect_not_found(check, &missing, connector.set_active(&missing, false).await);
    expect_not_found(check, &missing, connector.set_active(&missing, true).await);
    report.checks.push(check);

    if let Some(members_of) = subject.group_members {
        group_checks(
            subject,
            members_of,
            &connector,
            &other_instance,
            &id,
            tag,
            &mut report,
        )
        .await;
    }

    if subject.has_delete {
        let check = "delete removes the account; a second delete is NotFound";
        connector
            .delete(&id)
            .await
            .unwrap_or_else(|e| panic!("{check}: {e:?}"));
        assert_eq!(got(connector.as_ref(), &id, check).await, None, "{check}");
        assert_eq!(
            found(connector.as_ref(), &by_identity, check).await,
            None,
            "{check}"
        );
        expect_not_found(check, &id, connector.delete(&id).await);
        expect_not_found(check, &id, connector.update(&id, &changed).await);
        report.checks.push(check);
    }
    report
}

/// Groups: found by name, created once, members added and removed by name only.
async fn group_checks(
    subject: &Subject<'_>,
    members_of: &MembersOf<'_>,
    connector: &Arc<dyn Connector>,
    other_instance: &Arc<dyn Connector>,
    account: &str,
    tag: &str,
    report: &mut Report,
) {
    let name = format!("conformance-{tag}");
    let options = GroupOptions::default();
    let group_id = |check: &'static str, instance: &Arc<dyn Connector>, create: bool| {
        let instance = Arc::clone(instance);
        let name = name.clone();
        async move {
            instance
                .group_id(&name, create)
                .await
                .unwrap_or_else(|e| panic!("{check}: group_id failed: {e:?}"))
                .value
        }
    };

    let check = "a group is found by name once it exists; creating it twice makes one group";
    assert_eq!(group_id(check, connector, false).await, None, "{check}");
    let group = group_id(check, connector, true)
        .await
        .unwrap_or_else(|| panic!("{check}: create gave no id"));
    for (instance, create) in [(other_instance, false), (connector, true)] {
        assert_eq!(
            group_id(check, instance, create).await.as_deref(),
            Some(group.as_str()),
            "{check}"
        );
    }
    assert_eq!(
        members_of(group.clone()).await,
        Vec::<String>::new(),
        "{check}: a new group is empty"
    );
    report.checks.push(check);

    let check = "adding a member puts it in the group; adding it again is harmless";
    let member = vec![account.to_owned()];
    for round in 0..2 {
        connector
            .add_members(&group, &member, &options)
            .await
            .unwrap_or_else(|e| panic!("{check} (round {round}): {e:?}"));
        assert_eq!(
            members_of(group.clone()).await,
            member,
            "{check} (round {round})"
        );
    }
    report.checks.push(check);

    let check = "removing a member takes out only that member; removing it again is harmless";
    let other = other_instance
        .create(&(subject.new_account)(&format!("{tag}-b")))
        .await
        .unwrap_or_else(|e| panic!("{check}: creating a second account: {e:?}"))
        .value
        .id;
    connector
        .add_members(&group, std::slice::from_ref(&other), &options)
        .await
        .unwrap_or_else(|e| panic!("{check}: {e:?}"));
    let mut both = vec![account.to_owned(), other.clone()];
    both.sort();
    let mut now = members_of(group.clone()).await;
    now.sort();
    assert_eq!(now, both, "{check}: both members before the removal");
    for round in 0..2 {
        match other_instance
            .remove_members(&group, &member, &options)
            .await
        {
            Ok(_) | Err(ConnectorError::NotFound { .. }) => {}
            Err(e) => panic!("{check} (round {round}): {e:?}"),
        }
        assert_eq!(
            members_of(group.clone()).await,
            vec![other.clone()],
            "{check} (round {round}): the other member stays"
        );
    }
    report.checks.push(check);
}
