//! Reading every User of a target, page by page (RFC 7644 §3.4.2.4), for reconciliation.

use std::collections::HashSet;

use reqwest::Method;
use serde_json::Value;

use super::{ScimConnector, account_from, list_resources};
use crate::connector::{ConnectorError, TargetAccount};

/// Most pages read; a target that keeps answering beyond this is not paging properly.
pub const MAX_USER_PAGES: usize = 10_000;

impl ScimConnector {
    /// Every User of the target, `page_size` per request, in the order the target lists them.
    /// Stops at `totalResults`, or at the first empty page for targets that do not count.
    pub async fn list_users(&self, page_size: usize) -> Result<Vec<TargetAccount>, ConnectorError> {
        let page_size = page_size.clamp(1, 1000);
        let mut accounts: Vec<TargetAccount> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut start_index = 1usize;
        for _ in 0..MAX_USER_PAGES {
            let url = format!(
                "{}?startIndex={start_index}&count={page_size}",
                self.users_url()
            );
            let answer = self.send(Method::GET, &url, None).await?;
            if !answer.is_success() {
                return Err(answer.failure());
            }
            let list = answer.json()?;
            let total = list
                .as_object()
                .and_then(|fields| {
                    fields
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("totalResults"))
                })
                .and_then(|(_, v)| v.as_u64());
            let resources = list_resources(list)?;
            let page_len = resources.len();
            for resource in resources {
                let account = account_from(resource)?;
                // A target whose pages overlap must not make one account look like two.
                if seen.insert(account.id.clone()) {
                    accounts.push(account);
                }
            }
            start_index += page_len;
            let done = page_len == 0 || total.is_some_and(|t| (start_index - 1) as u64 >= t);
            if done {
                return Ok(accounts);
            }
        }
        Err(ConnectorError::BadResponse(format!(
            "the target was still listing users after {MAX_USER_PAGES} pages; giving up"
        )))
    }
}

/// The value of `userName`, for reports.
pub fn user_name(resource: &Value) -> Option<&str> {
    resource.as_object().and_then(|fields| {
        fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("userName"))
            .and_then(|(_, v)| v.as_str())
    })
}
