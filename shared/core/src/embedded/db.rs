//! The embedded database: one `redb` file that the queue and the stores share.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};

use redb::{Database, DatabaseError, Durability, WriteTransaction};
use time::OffsetDateTime;
use tokio::sync::{Mutex, Notify};

use crate::ports::{QueueError, StoreError};

/// The file inside the data directory.
pub const DATABASE_FILE_NAME: &str = "userprov.redb";

/// redb's page cache. Its default (1 GiB) let the process grow with the database: a 100,000-job
/// queue is about 160 MiB on disk. The hot pages (the queue's head, the indexes' upper levels,
/// the newest log entries) fit in far less; the rest is in the operating system's file cache.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

/// A handle on the embedded database. Cheap to clone; every clone uses the same file.
#[derive(Clone)]
pub struct EmbeddedDb {
    inner: Arc<Inner>,
}

struct Inner {
    database: Database,
    path: PathBuf,
    /// Wakes queue receivers waiting for a message: shared by every queue over this database.
    queue_changed: Notify,
    /// Group commit: see [`EmbeddedDb::sync`].
    syncs: SyncState,
    /// Shared write transactions: see [`EmbeddedDb::write_shared`].
    shared_writes: std::sync::Mutex<SharedWrites>,
}

/// A write that may share its transaction with other callers' writes. It can run twice: when
/// a write of a shared transaction fails, each is run again in a transaction of its own.
type SharedWrite = Box<dyn Fn(&WriteTransaction) -> Result<(), Failure> + Send>;

struct PendingWrite {
    write: SharedWrite,
    done: tokio::sync::oneshot::Sender<Result<(), Failure>>,
}

/// The writes waiting for the next shared transaction, and whether a writer is running.
#[derive(Default)]
struct SharedWrites {
    pending: Vec<PendingWrite>,
    writing: bool,
}

/// Tickets for [`EmbeddedDb::sync`]: a caller takes the next ticket after its commit; a sync
/// that starts after a ticket was taken covers it.
#[derive(Default)]
struct SyncState {
    /// The last ticket handed out.
    requested: AtomicU64,
    /// Every ticket up to this one is on disk.
    synced: AtomicU64,
    /// Held by the caller that is syncing; the others wait on it and usually find their
    /// ticket covered when they get it.
    syncing: Mutex<()>,
    /// Shared-write commits made so far: counted after each commit.
    written: AtomicU64,
    /// Every shared-write commit up to this count is on disk.
    written_synced: AtomicU64,
}

impl std::fmt::Debug for EmbeddedDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedDb")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl EmbeddedDb {
    /// Opens (creating if needed) `data_dir/userprov.redb`. Only one process may hold it.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot create the data directory {}: {e}",
                data_dir.display()
            ))
        })?;
        let path = data_dir.join(DATABASE_FILE_NAME);
        let database = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => StoreError::Unavailable(format!(
                "the database {} is in use by another userprov process; stop it or choose another data directory",
                path.display()
            )),
            other => StoreError::Unavailable(format!(
                "cannot open the database {}: {other}",
                path.display()
            )),
        })?;
        create_tables(&database).map_err(StoreError::from)?;
        Ok(Self {
            inner: Arc::new(Inner {
                database,
                path,
                queue_changed: Notify::new(),
                syncs: SyncState::default(),
                shared_writes: std::sync::Mutex::new(SharedWrites::default()),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub(super) fn queue_changed(&self) -> &Notify {
        &self.inner.queue_changed
    }

    /// Runs `work` on the blocking thread pool: redb transactions block on disk I/O.
    pub(super) async fn run<T, F>(&self, work: F) -> Result<T, Failure>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, Failure> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || work(&inner.database))
            .await
            .map_err(|e| Failure::Database(format!("the database task stopped: {e}")))?
    }

    /// Applies `write` in a write transaction it may share with the writes of other callers
    /// waiting at the same time, committed without a sync (the caller then awaits
    /// [`EmbeddedDb::sync`]). Writes of concurrent jobs usually touch the same pages (the newest
    /// log entries and their index keys), and redb copies and writes each dirty page once per
    /// commit under its single writer lock: one commit for many writes is what lets the worker
    /// scale past that lock.
    ///
    /// The writes of a shared transaction apply in the order they were asked for, each seeing
    /// the ones before it, exactly as if each had its own transaction. When one fails, nothing
    /// of the shared transaction is kept, and each write is run again alone, so a failure (a
    /// version conflict) stays the failing caller's own.
    pub(super) async fn write_shared<F>(&self, write: F) -> Result<(), Failure>
    where
        F: Fn(&WriteTransaction) -> Result<(), Failure> + Send + 'static,
    {
        let (done, result) = tokio::sync::oneshot::channel();
        let start_writer = {
            let mut state = self
                .inner
                .shared_writes
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            state.pending.push(PendingWrite {
                write: Box::new(write),
                done,
            });
            !std::mem::replace(&mut state.writing, true)
        };
        if start_writer {
            let inner = Arc::clone(&self.inner);
            tokio::task::spawn_blocking(move || write_pending(&inner));
        }
        result
            .await
            .map_err(|_| Failure::Database("the database writer stopped".to_owned()))?
    }

    /// Returns once every commit made before the call is on disk.
    ///
    /// redb applies commits in order and a synced commit makes every earlier one durable, so
    /// one empty synced commit covers the unsynced commits of all callers waiting together:
    /// under load a job's writes cost a share of one disk sync instead of one each, and the
    /// writer lock is not held across a sync per write. A crash before the sync loses only
    /// writes whose callers were never told they were done.
    pub(super) async fn sync(&self) -> Result<(), Failure> {
        let syncs = &self.inner.syncs;
        let ticket = syncs.requested.fetch_add(1, Ordering::SeqCst) + 1;
        if syncs.synced.load(Ordering::SeqCst) >= ticket {
            return Ok(());
        }
        let _syncing = syncs.syncing.lock().await;
        if syncs.synced.load(Ordering::SeqCst) >= ticket {
            return Ok(());
        }
        // Every ticket up to `covers` was taken after its commit, so the commit below, which
        // starts later, makes all of them durable; so are the shared writes counted so far.
        let covers = syncs.requested.load(Ordering::SeqCst);
        let covers_written = syncs.written.load(Ordering::SeqCst);
        self.run(|db| {
            let txn = db.begin_write()?;
            txn.commit()?;
            Ok(())
        })
        .await?;
        syncs.synced.fetch_max(covers, Ordering::SeqCst);
        syncs
            .written_synced
            .fetch_max(covers_written, Ordering::SeqCst);
        Ok(())
    }

    /// What a crash of the process now would leave, opened from `data_dir`: a copy of the
    /// database file as it is, without the clean shutdown that dropping the database makes.
    /// redb writes an unsynced commit's pages but points its header at them only in a synced
    /// commit, so the copy holds exactly the commits synced so far.
    #[cfg(test)]
    pub(crate) fn after_a_crash(&self, data_dir: &Path) -> Self {
        #![allow(clippy::unwrap_used)]
        std::fs::create_dir_all(data_dir).unwrap();
        std::fs::copy(self.path(), data_dir.join(DATABASE_FILE_NAME)).unwrap();
        Self::open(data_dir).unwrap()
    }

    /// Returns once every [`EmbeddedDb::write_shared`] commit that returned before the call is
    /// on disk, syncing only if no sync since has covered them. A caller that left a write
    /// unsynced (an account link) and then made a synced one (the provisioning log entry)
    /// finds it already durable here, at no cost.
    pub(super) async fn sync_shared_writes(&self) -> Result<(), Failure> {
        let syncs = &self.inner.syncs;
        let written = syncs.written.load(Ordering::SeqCst);
        if syncs.written_synced.load(Ordering::SeqCst) >= written {
            return Ok(());
        }
        self.sync().await
    }
}

/// Runs the pending shared writes, a transaction per round, until none are left.
fn write_pending(inner: &Inner) {
    // If a write panics, the next caller must still be able to start a writer. (A normal end
    // clears the flag below, under the lock; clearing it again here could let two run.)
    struct WriterRunning<'a>(&'a Inner);
    impl Drop for WriterRunning<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                let mut state = self
                    .0
                    .shared_writes
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                state.writing = false;
            }
        }
    }
    let _running = WriterRunning(inner);
    loop {
        let batch = {
            let mut state = inner
                .shared_writes
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if state.pending.is_empty() {
                // Cleared under the lock, so a caller that pushes after this starts a writer.
                state.writing = false;
                return;
            }
            std::mem::take(&mut state.pending)
        };
        if batch.len() > 1 && apply_writes(&inner.database, batch.iter().map(|p| &p.write)).is_ok()
        {
            inner.syncs.written.fetch_add(1, Ordering::SeqCst);
            for pending in batch {
                let _ = pending.done.send(Ok(()));
            }
            continue;
        }
        for pending in batch {
            let alone = apply_writes(&inner.database, std::iter::once(&pending.write));
            if alone.is_ok() {
                inner.syncs.written.fetch_add(1, Ordering::SeqCst);
            }
            let _ = pending.done.send(alone);
        }
    }
}

/// Applies writes in one unsynced transaction: all of them, or (on the first failure) none.
fn apply_writes<'a>(
    database: &Database,
    writes: impl Iterator<Item = &'a SharedWrite>,
) -> Result<(), Failure> {
    let txn = begin_unsynced(database)?;
    for write in writes {
        if let Err(failure) = write(&txn) {
            // Nothing of a failed transaction is kept.
            let _ = txn.abort();
            return Err(failure);
        }
    }
    txn.commit()?;
    Ok(())
}

/// A write transaction whose commit is not synced to disk: the caller then awaits
/// [`EmbeddedDb::sync`] before it reports the write as done, so one sync covers the commits
/// of every caller waiting at the same time (group commit).
pub(super) fn begin_unsynced(database: &Database) -> Result<WriteTransaction, Failure> {
    let mut txn = database.begin_write()?;
    txn.set_durability(Durability::None);
    Ok(txn)
}

/// Every table exists from the start, so read transactions can open any of them.
fn create_tables(database: &Database) -> Result<(), Failure> {
    let txn = database.begin_write()?;
    super::queue::create_tables(&txn)?;
    super::store::create_tables(&txn)?;
    super::holds::create_tables(&txn)?;
    txn.commit()?;
    Ok(())
}

/// Why an embedded operation failed, before it is expressed in the error type of the port
/// that was called.
#[derive(Debug)]
pub(super) enum Failure {
    /// The database itself failed: I/O, a transaction that could not start or commit.
    Database(String),
    /// A stored record does not decode.
    Corrupt(String),
    /// The caller asked for something that cannot be done.
    BadRequest(String),
    /// A conditional write found another version.
    Conflict { expected: Option<u64> },
}

impl Failure {
    pub(super) fn corrupt(what: &str, error: impl std::fmt::Display) -> Self {
        Self::Corrupt(format!("{what}: {error}"))
    }
}

macro_rules! database_failure_from {
    ($($error:ty),* $(,)?) => {$(
        impl From<$error> for Failure {
            fn from(error: $error) -> Self {
                Self::Database(format!("the embedded database failed: {error}"))
            }
        }
    )*};
}

database_failure_from!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
);

impl From<Failure> for StoreError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Database(message) => Self::Unavailable(message),
            Failure::Corrupt(message) => Self::Corrupt(message),
            Failure::BadRequest(message) => Self::BadRequest(message),
            Failure::Conflict { expected } => Self::Conflict { expected },
        }
    }
}

impl From<Failure> for QueueError {
    fn from(failure: Failure) -> Self {
        match failure {
            // The queue's own records: if one does not decode, the queue cannot work.
            Failure::Database(message) | Failure::Corrupt(message) => Self::Unavailable(message),
            Failure::BadRequest(message) => Self::Rejected(message),
            Failure::Conflict { expected } => Self::Unavailable(format!(
                "a queue record changed concurrently (version {expected:?})"
            )),
        }
    }
}

/// Milliseconds since the Unix epoch: how the embedded adapters store instants.
pub(super) fn unix_ms(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

pub(super) fn from_unix_ms(ms: i64) -> Result<OffsetDateTime, Failure> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|e| Failure::corrupt("a stored time is out of range", e))
}

pub(super) fn duration_ms(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn opening_creates_the_directory_and_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("nested/data");
        let db = EmbeddedDb::open(&data_dir).unwrap();
        assert_eq!(db.path(), data_dir.join(DATABASE_FILE_NAME));
        assert!(db.path().is_file());
    }

    #[test]
    fn a_database_held_by_someone_else_is_refused_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let _held = EmbeddedDb::open(dir.path()).unwrap();
        let error = EmbeddedDb::open(dir.path()).unwrap_err();
        assert!(
            matches!(&error, StoreError::Unavailable(m) if m.contains("in use by another userprov process")),
            "{error}"
        );
    }

    #[test]
    fn a_database_can_be_reopened_once_released() {
        let dir = tempfile::tempdir().unwrap();
        drop(EmbeddedDb::open(dir.path()).unwrap());
        EmbeddedDb::open(dir.path()).unwrap();
    }
}
