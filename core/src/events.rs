//! Change events: observers, subscriptions that end on drop, and the watcher thread that
//! notices local writes made by any connection (it polls `PRAGMA data_version` on its own
//! connection and stamps queued writes, which yields their events).

use crate::conflict::Conflict;
use crate::fold;
use crate::value::Value;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

/// One changed row.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub table: String,
    pub pk: Vec<Value>,
    /// Columns whose value changed (empty for a delete).
    pub columns: Vec<String>,
    pub deleted: bool,
}

/// What subscribers are told.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A row changed by a local write (any connection, any process).
    LocalChange(Change),
    /// A row changed by an imported bundle.
    RemoteChange(Change),
    /// A conflict was detected (recorded for `manual` tables, settled otherwise).
    Conflict(Conflict),
}

impl Event {
    /// `"local"`, `"remote"` or `"conflict"`: the name every binding gives the event's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::LocalChange(_) => "local",
            Event::RemoteChange(_) => "remote",
            Event::Conflict(_) => "conflict",
        }
    }

    /// The table of the changed row or conflicting cell.
    pub fn table(&self) -> &str {
        match self {
            Event::LocalChange(c) | Event::RemoteChange(c) => &c.table,
            Event::Conflict(c) => &c.table,
        }
    }

    /// The primary key of the changed row or conflicting cell.
    pub fn pk(&self) -> &[Value] {
        match self {
            Event::LocalChange(c) | Event::RemoteChange(c) => &c.pk,
            Event::Conflict(c) => &c.pk,
        }
    }

    /// The columns the event is about: those whose value changed (none for a delete), or the
    /// one conflicting column.
    pub fn columns(&self) -> &[String] {
        match self {
            Event::LocalChange(c) | Event::RemoteChange(c) => &c.columns,
            Event::Conflict(c) => std::slice::from_ref(&c.column),
        }
    }

    /// Whether the row was deleted (never for a conflict).
    pub fn deleted(&self) -> bool {
        matches!(self, Event::LocalChange(c) | Event::RemoteChange(c) if c.deleted)
    }

    /// The conflict, for a conflict event.
    pub fn conflict(&self) -> Option<&Conflict> {
        match self {
            Event::Conflict(c) => Some(c),
            _ => None,
        }
    }
}

/// Receives events. Called on the engine's threads, never while the engine holds a lock.
pub trait Observer: Send + Sync {
    fn on_event(&self, event: &Event);
}

impl<F: Fn(&Event) + Send + Sync> Observer for F {
    fn on_event(&self, event: &Event) {
        self(event)
    }
}

/// The observers of one engine.
#[derive(Default)]
pub(crate) struct Hub {
    next_id: AtomicU64,
    observers: Mutex<Vec<(u64, Arc<dyn Observer>)>>,
    watcher: Mutex<Option<Watcher>>,
}

impl Hub {
    pub fn has_observers(&self) -> bool {
        !self.observers.lock().unwrap().is_empty()
    }

    /// Deliver events to a snapshot of the observers, with no lock held.
    pub fn emit(&self, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        let observers: Vec<Arc<dyn Observer>> = self.observers.lock().unwrap().iter().map(|(_, o)| o.clone()).collect();
        for e in events {
            for o in &observers {
                o.on_event(e);
            }
        }
    }

    pub fn add(self: &Arc<Self>, observer: Arc<dyn Observer>, path: &Path, interval: Duration, busy_timeout: Duration) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.observers.lock().unwrap().push((id, observer));
        let mut watcher = self.watcher.lock().unwrap();
        if watcher.is_none() {
            *watcher = Some(Watcher::start(Arc::downgrade(self), path.to_owned(), interval, busy_timeout));
        }
        Subscription { hub: Arc::downgrade(self), id, closed: AtomicBool::new(false) }
    }

    fn remove(&self, id: u64) {
        let empty = {
            let mut obs = self.observers.lock().unwrap();
            obs.retain(|(i, _)| *i != id);
            obs.is_empty()
        };
        if empty {
            let w = self.watcher.lock().unwrap().take();
            if let Some(w) = w {
                w.stop();
            }
        }
    }

    /// Stop the watcher (engine closing).
    pub fn shutdown(&self) {
        self.observers.lock().unwrap().clear();
        let w = self.watcher.lock().unwrap().take();
        if let Some(w) = w {
            w.stop();
        }
    }
}

/// A live subscription; dropping it (or calling [`Subscription::close`]) unsubscribes.
pub struct Subscription {
    hub: Weak<Hub>,
    id: u64,
    closed: AtomicBool,
}

impl Subscription {
    pub fn close(&self) {
        if !self.closed.swap(true, Ordering::SeqCst) {
            if let Some(hub) = self.hub.upgrade() {
                hub.remove(self.id);
            }
        }
    }
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.close();
    }
}

/// Background thread stamping local writes soon after they commit, turning them into
/// `LocalChange` events.
pub(crate) struct Watcher {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Watcher {
    fn start(hub: Weak<Hub>, path: PathBuf, interval: Duration, busy_timeout: Duration) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("syncline-watch".into())
            .spawn(move || {
                let Ok(mut conn) = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                else {
                    return;
                };
                let _ = conn.busy_timeout(busy_timeout);
                let mut version = -1i64;
                while !flag.load(Ordering::SeqCst) {
                    if let Ok(v) = conn.query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0)) {
                        // On an error (the write lock stayed busy) try again at the next tick.
                        if v != version {
                            if let Ok(events) = stamp_pending(&mut conn) {
                                version = v;
                                match hub.upgrade() {
                                    Some(h) => h.emit(&events),
                                    None => return,
                                }
                            }
                        }
                    }
                    // Sleep in short steps so stopping is prompt.
                    let mut left = interval;
                    while !left.is_zero() && !flag.load(Ordering::SeqCst) {
                        let step = left.min(Duration::from_millis(20));
                        std::thread::sleep(step);
                        left -= step;
                    }
                }
            })
            .expect("spawn watcher thread");
        Watcher { stop, handle: Some(handle) }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

/// Stamp the queued writes, if any, in a write transaction of the watcher's connection.
fn stamp_pending(conn: &mut Connection) -> crate::Result<Vec<Event>> {
    if !fold::pending(conn)? {
        return Ok(Vec::new());
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let events = fold::fold(&tx, true)?;
    tx.commit()?;
    Ok(events)
}
