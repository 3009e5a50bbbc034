//! Reading every User of a target, page by page (by index, RFC 7644 §3.4.2.4, or by cursor,
//! RFC 9865), for reconciliation and to find accounts in a target without filters.

use std::collections::HashSet;

use reqwest::Method;
use serde_json::Value;

use super::discovery::Paging;
use super::{ScimConnector, account_from, list_resources};
use crate::connector::{ConnectorError, TargetAccount};

/// Most pages read; a target that keeps answering beyond this is not paging properly.
pub const MAX_USER_PAGES: usize = 10_000;

/// The page size asked for when a target without filters is searched.
pub const FIND_PAGE_SIZE: usize = 200;

/// A member of a list answer, its name compared without regard to case.
fn list_member<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

impl ScimConnector {
    /// Every User of the target, `page_size` per request (within what the target allows), in
    /// the order the target lists them.
    pub async fn list_users(&self, page_size: usize) -> Result<Vec<TargetAccount>, ConnectorError> {
        let mut accounts: Vec<TargetAccount> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        self.walk_users(page_size, |page| {
            for resource in page {
                let account = account_from(resource)?;
                // A target whose pages overlap must not make one account look like two.
                if seen.insert(account.id.clone()) {
                    accounts.push(account);
                }
            }
            Ok(())
        })
        .await?;
        Ok(accounts)
    }

    /// Reads every page of `/Users`, by index or by cursor as the target pages, and hands each
    /// page's resources to `visit`. Index paging stops at `totalResults`, or at the first empty
    /// page for targets that do not count; cursor paging stops when there is no `nextCursor`.
    /// Returns the status of the last answer.
    pub(super) async fn walk_users(
        &self,
        page_size: usize,
        mut visit: impl FnMut(Vec<Value>) -> Result<(), ConnectorError>,
    ) -> Result<u16, ConnectorError> {
        let capabilities = self.capabilities().await?;
        let count = capabilities.page_size(page_size);
        let mut start_index = 1usize;
        let mut cursor = String::new();
        for _ in 0..MAX_USER_PAGES {
            let position = match capabilities.paging {
                Paging::Index => format!("startIndex={start_index}"),
                Paging::Cursor => format!("cursor={}", urlencoding::encode(&cursor)),
            };
            let url = format!("{}?{position}&count={count}", self.users_url());
            let answer = self.send(Method::GET, &url, None).await?;
            if !answer.is_success() {
                return Err(answer.failure());
            }
            let list = answer.json()?;
            let total = list_member(&list, "totalResults").and_then(Value::as_u64);
            let next_cursor = list_member(&list, "nextCursor")
                .and_then(Value::as_str)
                .filter(|c| !c.is_empty())
                .map(str::to_owned);
            let resources = list_resources(list)?;
            let page_len = resources.len();
            visit(resources)?;
            let done = match capabilities.paging {
                Paging::Index => {
                    start_index += page_len;
                    page_len == 0 || total.is_some_and(|t| (start_index - 1) as u64 >= t)
                }
                Paging::Cursor => match next_cursor {
                    // The same cursor again would read the same page forever.
                    Some(next) if next != cursor => {
                        cursor = next;
                        false
                    }
                    _ => true,
                },
            };
            if done {
                return Ok(answer.status);
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
