//! Secrets on the local machine: one file per secret under a directory, each overridable by an
//! environment variable.
//!
//! The secret `userprov/slack` is the file `<dir>/userprov/slack` (its content, less one
//! trailing newline), unless `USERPROV_SECRET_USERPROV_SLACK` is set. Unlike the rest of the
//! configuration, the environment is read at each call rather than once at start-up: this
//! adapter is for one machine, and reading late lets an operator fix a secret without a
//! restart.

use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use crate::ports::{SecretError, SecretStore, SecretValue};

/// Environment variables that override secrets start with this.
pub const SECRET_ENV_PREFIX: &str = "USERPROV_SECRET_";

/// Secrets Manager's limit, kept so a name that works here works there.
const MAX_NAME_LEN: usize = 512;

/// The environment variable that overrides the secret `name`: the prefix, then the name in
/// upper case with every character other than a letter or digit as `_`.
pub fn secret_env_var(name: &str) -> String {
    let mut var = String::with_capacity(SECRET_ENV_PREFIX.len() + name.len());
    var.push_str(SECRET_ENV_PREFIX);
    var.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        }
    }));
    var
}

type EnvLookup = dyn Fn(&str) -> Option<String> + Send + Sync;

/// Secrets in files under a directory, overridable by environment variables.
#[derive(Clone)]
pub struct LocalSecretStore {
    dir: PathBuf,
    env: Arc<EnvLookup>,
}

impl std::fmt::Debug for LocalSecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalSecretStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl LocalSecretStore {
    /// Secrets under `dir`, overridden by the process environment (read at each call).
    pub fn new(dir: PathBuf) -> Self {
        Self::with_env_lookup(dir, |var| std::env::var(var).ok())
    }

    /// Secrets under `dir`, overridden by whatever `lookup` returns for a variable name: for
    /// tests, and for callers that snapshot the environment themselves.
    pub fn with_env_lookup(
        dir: PathBuf,
        lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        Self {
            dir,
            env: Arc::new(lookup),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of the secret `name`, once the name is known to stay inside the directory.
    fn path_of(&self, name: &str) -> Result<PathBuf, SecretError> {
        let refuse = |reason: &str| SecretError::Malformed {
            name: name.to_owned(),
            reason: format!("not a usable local secret name: {reason}"),
        };
        if name.is_empty() {
            return Err(refuse("it is empty"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(refuse("it is longer than 512 characters"));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "/_+=.@-".contains(*c)))
        {
            return Err(refuse(&format!(
                "{bad:?} is not one of A-Z a-z 0-9 / _ + = . @ -"
            )));
        }
        if name.starts_with('/') {
            return Err(refuse("it is an absolute path"));
        }
        if name
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
        {
            return Err(refuse("it has an empty, `.` or `..` part"));
        }
        let relative = Path::new(name);
        if !relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(refuse("it does not stay inside the secrets directory"));
        }
        Ok(self.dir.join(relative))
    }
}

/// The value of a secret as stored: UTF-8, one trailing newline dropped, not empty.
fn value_from_text(name: &str, mut text: String) -> Result<SecretValue, SecretError> {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.is_empty() {
        return Err(SecretError::Malformed {
            name: name.to_owned(),
            reason: "the value is empty".to_owned(),
        });
    }
    Ok(SecretValue::new(text))
}

fn io_error(name: &str, doing: &str, error: &std::io::Error) -> SecretError {
    match error.kind() {
        std::io::ErrorKind::NotFound => SecretError::NotFound {
            name: name.to_owned(),
        },
        std::io::ErrorKind::PermissionDenied => SecretError::Denied {
            name: name.to_owned(),
        },
        // The kind only: an I/O message never carries file content, but stays terse anyway.
        kind => SecretError::Unavailable(format!("cannot {doing} secret {name:?}: {kind}")),
    }
}

fn read_secret_file(name: &str, path: &Path) -> Result<SecretValue, SecretError> {
    let bytes = std::fs::read(path).map_err(|e| io_error(name, "read", &e))?;
    let text = String::from_utf8(bytes).map_err(|_| SecretError::Malformed {
        name: name.to_owned(),
        reason: "the file is not UTF-8 text".to_owned(),
    })?;
    value_from_text(name, text)
}

/// Writes the file whole or not at all: a temporary file in the same directory, flushed to
/// disk, then renamed over the old one.
fn write_secret_file(name: &str, path: &Path, value: &SecretValue) -> Result<(), SecretError> {
    let parent = path
        .parent()
        .ok_or_else(|| SecretError::Unavailable(format!("secret {name:?} has no directory")))?;
    let mut dirs = std::fs::DirBuilder::new();
    dirs.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut dirs, 0o700);
    dirs.create(parent)
        .map_err(|e| io_error(name, "create the directory of", &e))?;

    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp_path = parent.join(format!(".{file_name}.{:016x}.tmp", rand::random::<u64>()));
    let written = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temp_path)?;
        // The trailing newline is the one reading drops, so any value reads back unchanged.
        file.write_all(value.expose().as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&temp_path, path)?;
        // Make the rename itself durable; not every platform can sync a directory.
        if let Ok(dir) = std::fs::File::open(parent) {
            let _ = dir.sync_all();
        }
        Ok::<(), std::io::Error>(())
    })();
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temp_path);
        return Err(io_error(name, "write", &error));
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, SecretError> + Send + 'static,
) -> Result<T, SecretError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| SecretError::Unavailable(format!("the secret file task stopped: {e}")))?
}

#[async_trait]
impl SecretStore for LocalSecretStore {
    async fn get_secret(&self, name: &str) -> Result<SecretValue, SecretError> {
        let path = self.path_of(name)?;
        if let Some(value) = (self.env)(&secret_env_var(name)) {
            return value_from_text(name, value);
        }
        let name = name.to_owned();
        blocking(move || read_secret_file(&name, &path)).await
    }

    async fn put_secret(&self, name: &str, value: &SecretValue) -> Result<(), SecretError> {
        let path = self.path_of(name)?;
        if value.expose().is_empty() {
            return Err(SecretError::Malformed {
                name: name.to_owned(),
                reason: "the value is empty".to_owned(),
            });
        }
        let env_var = secret_env_var(name);
        if (self.env)(&env_var).is_some() {
            // The file is still written so the new value is not lost, but it is not the one
            // read back while the variable is set.
            tracing::warn!(
                secret = name,
                env_var = %env_var,
                "secret written to its file, but the environment variable overrides it until it is unset"
            );
        }
        let name = name.to_owned();
        let value = value.clone();
        blocking(move || write_secret_file(&name, &path, &value)).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::collections::HashMap;

    use super::*;

    fn store_with_env(dir: &Path, env: &[(&str, &str)]) -> LocalSecretStore {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        LocalSecretStore::with_env_lookup(dir.to_path_buf(), move |var| env.get(var).cloned())
    }

    #[test]
    fn the_env_var_is_the_name_in_upper_case_with_underscores() {
        assert_eq!(
            secret_env_var("userprov/slack"),
            "USERPROV_SECRET_USERPROV_SLACK"
        );
        assert_eq!(
            secret_env_var("team-a/git.hub@x"),
            "USERPROV_SECRET_TEAM_A_GIT_HUB_X"
        );
    }

    #[tokio::test]
    async fn a_secret_is_its_file_less_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("userprov")).unwrap();
        std::fs::write(dir.path().join("userprov/slack"), "xoxb-123\n\n").unwrap();
        std::fs::write(dir.path().join("userprov/crlf"), "token\r\n").unwrap();
        let store = store_with_env(dir.path(), &[]);
        assert_eq!(
            store.get_secret("userprov/slack").await.unwrap().expose(),
            "xoxb-123\n"
        );
        assert_eq!(
            store.get_secret("userprov/crlf").await.unwrap().expose(),
            "token"
        );
    }

    #[tokio::test]
    async fn the_environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("userprov")).unwrap();
        std::fs::write(dir.path().join("userprov/slack"), "from-file").unwrap();
        let store = store_with_env(
            dir.path(),
            &[("USERPROV_SECRET_USERPROV_SLACK", "from-env")],
        );
        assert_eq!(
            store.get_secret("userprov/slack").await.unwrap().expose(),
            "from-env"
        );
        // Without a file at all.
        let store = store_with_env(
            dir.path(),
            &[("USERPROV_SECRET_USERPROV_GITHUB", "gh-token")],
        );
        assert_eq!(
            store.get_secret("userprov/github").await.unwrap().expose(),
            "gh-token"
        );
    }

    const CHILD_PROBE: &str = "USERPROV_SECRET_TEST_PROBE";

    #[tokio::test]
    async fn the_process_environment_overrides_by_default() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalSecretStore::new(dir.path().to_path_buf());
        if let Ok(expected) = std::env::var(CHILD_PROBE) {
            // In the child process started below, with the variable set.
            assert_eq!(
                store.get_secret("test/probe").await.unwrap().expose(),
                expected
            );
            return;
        }
        // Setting a variable in this process needs `unsafe`: run this test again in a child
        // process that has it.
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "embedded::secrets::tests::the_process_environment_overrides_by_default",
            ])
            .env(CHILD_PROBE, "probe-value")
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "the child process did not read the variable"
        );
        let error = store.get_secret("test/probe").await.unwrap_err();
        assert!(matches!(error, SecretError::NotFound { .. }), "{error}");
    }

    #[tokio::test]
    async fn a_missing_secret_is_not_found_and_an_empty_one_is_malformed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        let store = store_with_env(dir.path(), &[]);
        assert!(matches!(
            store.get_secret("userprov/none").await,
            Err(SecretError::NotFound { .. })
        ));
        assert!(matches!(
            store.get_secret("empty").await,
            Err(SecretError::Malformed { .. })
        ));
    }

    #[tokio::test]
    async fn put_writes_the_file_with_owner_only_permissions_creating_directories() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_env(dir.path(), &[]);
        store
            .put_secret("userprov/okta/refresh", &SecretValue::new("rt-1"))
            .await
            .unwrap();
        assert_eq!(
            store
                .get_secret("userprov/okta/refresh")
                .await
                .unwrap()
                .expose(),
            "rt-1"
        );
        store
            .put_secret("userprov/okta/refresh", &SecretValue::new("rt-2\n"))
            .await
            .unwrap();
        assert_eq!(
            store
                .get_secret("userprov/okta/refresh")
                .await
                .unwrap()
                .expose(),
            "rt-2\n"
        );

        let path = dir.path().join("userprov/okta/refresh");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(leftovers, ["refresh"], "no temporary file is left behind");
    }

    #[tokio::test]
    async fn names_that_could_leave_the_directory_or_hold_odd_characters_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("outside"), "secret").unwrap();
        let inner = dir.path().join("secrets");
        std::fs::create_dir_all(&inner).unwrap();
        let store = store_with_env(&inner, &[]);
        for name in [
            "../outside",
            "userprov/../../outside",
            "/etc/passwd",
            "",
            "a//b",
            "a/./b",
            "trailing/",
            "arn:aws:secretsmanager:eu-west-1:123:secret:x",
            "with space",
            "back\\slash",
            "new\nline",
        ] {
            let error = store.get_secret(name).await.unwrap_err();
            assert!(
                matches!(error, SecretError::Malformed { .. }),
                "{name:?}: {error}"
            );
            let error = store
                .put_secret(name, &SecretValue::new("v"))
                .await
                .unwrap_err();
            assert!(
                matches!(error, SecretError::Malformed { .. }),
                "{name:?}: {error}"
            );
        }
        assert_eq!(
            std::fs::read_to_string(dir.path().join("outside")).unwrap(),
            "secret"
        );
        for name in ["userprov/slack", "a+b=c.d@e-f_g", "x"] {
            store
                .put_secret(name, &SecretValue::new("ok"))
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn neither_debug_output_nor_errors_show_a_value() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("empty"), "").unwrap();
        let store = store_with_env(dir.path(), &[("USERPROV_SECRET_FROM_ENV", "hunter2-env")]);
        store
            .put_secret("stored", &SecretValue::new("hunter2-file"))
            .await
            .unwrap();
        let from_file = store.get_secret("stored").await.unwrap();
        let from_env = store.get_secret("from/env").await.unwrap();
        let shown = format!("{store:?} {from_file:?} {from_env:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let errors = format!(
            "{} {}",
            store.get_secret("empty").await.unwrap_err(),
            store.get_secret("../x").await.unwrap_err()
        );
        assert!(!errors.contains("hunter2"), "{errors}");
    }
}
