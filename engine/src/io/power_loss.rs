//! Simulated power loss through the I/O seam (feature `test-hooks` only): a
//! [`PowerLossVfs`] writes through to a real directory (so `Vfs::map` keeps working) and
//! keeps a shadow of what a power cut could leave of it.
//!
//! The shadow is inode-like: every file and directory created under the root gets a node
//! id that follows renames and hard links.
//! - **File data.** Per file node: its *durable* bytes (as of its last `sync_data` or
//!   `sync_all`), its *current* bytes, and the 4 KiB pages written or resized since that
//!   sync. In a crash image each unsynced page independently holds its current bytes or its
//!   durable ones (zeros past the durable end: prefixes, holes, reordering), and the size is
//!   the durable one, the current one, or a page boundary between them.
//! - **Directory entries.** Every create, mkdir, hard link, rename, unlink and rmdir is an
//!   entry operation in one ordered log, each naming the directories it changes. An
//!   operation is durable once every directory it changes has been fsynced (a directory
//!   opened with `OpenMode::Directory` and `sync_all`'d or `sync_data`'d) after it. A crash
//!   image replays the durable operations and, of the others, a prefix (journaling file
//!   systems keep metadata in order: [`ImageMode::Prefix`]) or an independent subset
//!   ([`ImageMode::Subset`]). This is conservative like ext4 without `auto_da_alloc`: a new
//!   name, a rename or an unlink is durable only after its directory's fsync, and renaming
//!   a file over another says nothing about the renamed file's unsynced data.
//!
//! **Crash points.** Every operation that changes what a power cut could leave (create,
//! write, set_len, fsync, rename, unlink, mkdir, rmdir, hard link) is a crash point: just
//! before it runs, the hook set with [`PowerLossVfs::on_crash_point`] is called with a
//! [`CrashPoint`] that builds [`CrashImage`]s of the state at that moment, while the
//! workload runs on — one run of a workload gives a crash point per operation.
//!
//! fsyncs are not forwarded to the disk: the shadow decides what is durable, and a real
//! fsync per operation would only make the tests slow. Paths outside the root pass through
//! untracked.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::io::{self, Read, Seek, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::io::maps::ReadOnlyMap;
use crate::io::vfs::{File, FileInfo, OpenMode, OsVfs, Vfs, VfsFile};
use crate::Result;

/// The unit in which unsynced data is kept or lost.
pub const PAGE: u64 = 4096;

/// A node: a file or a directory, as an inode number names it.
type NodeId = u64;
/// The root directory, which exists (durably) before the first operation.
const ROOT: NodeId = 0;

/// How a crash image treats the directory-entry operations that are not yet durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageMode {
    /// A random-length prefix of them, in order (a journaling file system).
    Prefix,
    /// Each one independently (a file system that reorders metadata too).
    Subset,
}

/// One directory-entry operation: what it did, and the directories whose fsync it waits for.
#[derive(Clone, Debug)]
struct EntryOp {
    change: Change,
    /// Directories it changed that have not been fsynced since; durable when empty.
    waiting_for: Vec<NodeId>,
}

#[derive(Clone, Debug)]
enum Change {
    /// A new name for `node` (create, mkdir, hard link).
    Link { parent: NodeId, name: OsString, node: NodeId },
    /// `node`'s name removed (unlink, rmdir).
    Unlink { parent: NodeId, name: OsString, node: NodeId },
    /// `node` moved, replacing whatever `to` named.
    Rename { from: (NodeId, OsString), to: (NodeId, OsString), node: NodeId },
}

/// Directory entries: (parent, name) → node.
#[derive(Clone, Default)]
struct Namespace {
    entries: BTreeMap<(NodeId, OsString), NodeId>,
}

impl Namespace {
    fn apply(&mut self, change: &Change) {
        match change {
            Change::Link { parent, name, node } => {
                self.entries.entry((*parent, name.clone())).or_insert(*node);
            }
            Change::Unlink { parent, name, node } => {
                let key = (*parent, name.clone());
                if self.entries.get(&key) == Some(node) {
                    self.entries.remove(&key);
                }
            }
            Change::Rename { from, to, node } => {
                if self.entries.get(from) == Some(node) {
                    self.entries.remove(from);
                    self.entries.insert(to.clone(), *node);
                }
            }
        }
    }

    fn lookup(&self, parent: NodeId, name: &OsString) -> Option<NodeId> {
        self.entries.get(&(parent, name.clone())).copied()
    }

    /// The entries of directory `dir`, in name order.
    fn children(&self, dir: NodeId) -> impl Iterator<Item = (&OsString, NodeId)> + '_ {
        let start = (dir, OsString::new());
        self.entries.range(start..).take_while(move |((parent, _), _)| *parent == dir).map(|((_, name), node)| (name, *node))
    }
}

/// The data of one file node.
#[derive(Clone, Default)]
struct FileData {
    durable: Vec<u8>,
    current: Vec<u8>,
    /// Pages written, extended or cut since the last sync.
    dirty: BTreeSet<u64>,
}

impl FileData {
    fn mark(&mut self, from: u64, to: u64) {
        if to > from {
            self.dirty.extend(from / PAGE..to.div_ceil(PAGE));
        }
    }

    fn write_at(&mut self, at: u64, bytes: &[u8]) {
        let (start, end) = (at as usize, at as usize + bytes.len());
        if self.current.len() < end {
            self.current.resize(end, 0);
        }
        self.current[start..end].copy_from_slice(bytes);
        self.mark(at, end as u64);
    }

    fn set_len(&mut self, len: u64) {
        let old = self.current.len() as u64;
        self.current.resize(len as usize, 0);
        self.mark(old.min(len), old.max(len));
    }

    fn sync(&mut self) {
        if !self.dirty.is_empty() || self.durable.len() != self.current.len() {
            self.durable.clone_from(&self.current);
            self.dirty.clear();
        }
    }

    /// What a power cut could leave of this file.
    fn crash_bytes(&self, rng: &mut SplitMix, keep: Keep) -> Vec<u8> {
        if self.dirty.is_empty() && self.durable.len() == self.current.len() {
            return self.current.clone();
        }
        let (low, high) = (self.durable.len().min(self.current.len()) as u64, self.durable.len().max(self.current.len()) as u64);
        let lost = match keep {
            Keep::AllButOne => self.dirty.iter().nth(rng.below(self.dirty.len().max(1) as u64) as usize).copied(),
            Keep::Share(_) => None,
        };
        let len = match (keep, rng.below(3)) {
            (Keep::AllButOne, _) | (_, 1) => self.current.len() as u64,
            (_, 0) => self.durable.len() as u64,
            _ => {
                let first = low.div_ceil(PAGE);
                let last = high / PAGE;
                if last > first {
                    (first + rng.below(last - first + 1)) * PAGE
                } else {
                    high
                }
            }
        };
        let mut bytes = vec![0u8; len as usize];
        for page in 0..len.div_ceil(PAGE) {
            let start = (page * PAGE) as usize;
            let end = ((page + 1) * PAGE).min(len) as usize;
            let kept = self.dirty.contains(&page) && keep.keeps(rng, Some(page) == lost);
            let source = if kept { &self.current } else { &self.durable };
            let available = source.len().min(end);
            if available > start {
                bytes[start..available].copy_from_slice(&source[start..available]);
            }
        }
        bytes
    }
}

/// The shadow of everything under the root.
struct State {
    /// The next node id to hand out.
    next_node: NodeId,
    /// Which nodes are directories.
    dirs: BTreeSet<NodeId>,
    files: HashMap<NodeId, FileData>,
    /// The namespace now (what the real directory holds).
    current: Namespace,
    /// Every entry operation since the root was empty, in order.
    log: Vec<EntryOp>,
    /// Indices into `log` of the operations that are not yet durable.
    waiting: Vec<usize>,
    /// Crash points passed so far.
    points: u64,
    hook: Option<Hook>,
}

type Hook = Arc<dyn Fn(&CrashPoint<'_>) + Send + Sync>;

impl State {
    fn new_node(&mut self, is_dir: bool) -> NodeId {
        self.next_node += 1;
        if is_dir {
            self.dirs.insert(self.next_node);
        } else {
            self.files.insert(self.next_node, FileData::default());
        }
        self.next_node
    }

    /// A crash point: the hook sees the state just before the operation that follows.
    fn crash_point(&mut self) {
        self.points += 1;
        if let Some(hook) = self.hook.clone() {
            hook(&CrashPoint { state: self, index: self.points });
        }
    }

    fn record(&mut self, change: Change) {
        let mut waiting_for = match &change {
            Change::Link { parent, .. } | Change::Unlink { parent, .. } => vec![*parent],
            Change::Rename { from, to, .. } => vec![from.0, to.0],
        };
        waiting_for.dedup();
        self.current.apply(&change);
        self.waiting.push(self.log.len());
        self.log.push(EntryOp { change, waiting_for });
    }

    /// The fsync of directory `dir`: the operations that changed it are durable there.
    fn sync_dir(&mut self, dir: NodeId) {
        let log = &mut self.log;
        self.waiting.retain(|&i| {
            log[i].waiting_for.retain(|&d| d != dir);
            !log[i].waiting_for.is_empty()
        });
    }

    /// The node `parts` names now, starting at the root.
    fn resolve(&self, parts: &[OsString]) -> Option<NodeId> {
        parts.iter().try_fold(ROOT, |dir, name| self.current.lookup(dir, name))
    }

    fn resolve_parent(&self, parts: &[OsString]) -> io::Result<(NodeId, OsString)> {
        let (name, parent) = parts.split_last().ok_or_else(|| invalid("the root itself cannot be created or removed"))?;
        let dir = self.resolve(parent).filter(|d| self.dirs.contains(d)).ok_or_else(|| untracked(parts))?;
        Ok((dir, name.clone()))
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("PowerLossVfs: {what}"))
}

fn untracked(parts: &[OsString]) -> io::Error {
    let path: PathBuf = parts.iter().collect();
    invalid(&format!("{} exists but was not created through this PowerLossVfs", path.display()))
}

/// Shared by a `PowerLossVfs` and every file it opened.
struct Shared {
    root: PathBuf,
    canonical_root: PathBuf,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A hook that panicked (a failed assertion in a test) leaves the shadow whole: every
        // change is made after the hook returns.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The components of `path` below the root, or `None` when it lies outside.
    fn relative(&self, path: &Path) -> Option<Vec<OsString>> {
        let rest = path.strip_prefix(&self.root).or_else(|_| path.strip_prefix(&self.canonical_root)).ok()?;
        let mut parts = Vec::new();
        for component in rest.components() {
            match component {
                Component::Normal(name) => parts.push(name.to_os_string()),
                Component::CurDir => {}
                _ => return None,
            }
        }
        Some(parts)
    }
}

/// A [`Vfs`] that writes through to a real directory and keeps what a power cut at any
/// moment could leave of it. Clones share their shadow.
#[derive(Clone)]
pub struct PowerLossVfs {
    shared: Arc<Shared>,
}

impl PowerLossVfs {
    /// Tracks everything created under `root`, which must be an existing, empty directory.
    pub fn new(root: &Path) -> io::Result<PowerLossVfs> {
        if !OsVfs.list_dir(root)?.is_empty() {
            return Err(invalid(&format!("the root {} must start empty", root.display())));
        }
        let state = State {
            next_node: ROOT,
            dirs: BTreeSet::from([ROOT]),
            files: HashMap::new(),
            current: Namespace::default(),
            log: Vec::new(),
            waiting: Vec::new(),
            points: 0,
            hook: None,
        };
        let shared = Shared { root: root.to_path_buf(), canonical_root: OsVfs.canonicalize(root)?, state: Mutex::new(state) };
        Ok(PowerLossVfs { shared: Arc::new(shared) })
    }

    /// The seam as `Options::vfs` takes it.
    pub fn as_vfs(&self) -> Arc<dyn Vfs> {
        Arc::new(self.clone())
    }

    /// Calls `hook` at every crash point, just before the operation runs (replacing any
    /// earlier hook). It runs with the shadow locked: it must not use this `PowerLossVfs`.
    pub fn on_crash_point(&self, hook: impl Fn(&CrashPoint<'_>) + Send + Sync + 'static) {
        self.shared.lock().hook = Some(Arc::new(hook));
    }

    /// Removes the hook.
    pub fn clear_crash_point_hook(&self) {
        self.shared.lock().hook = None;
    }

    /// The crash point of this moment (between operations), e.g. after a workload ends.
    pub fn crash_point_now<R>(&self, f: impl FnOnce(&CrashPoint<'_>) -> R) -> R {
        let state = self.shared.lock();
        f(&CrashPoint { state: &state, index: state.points })
    }

    /// How many crash points have passed (operations that change what a crash leaves).
    pub fn points(&self) -> u64 {
        self.shared.lock().points
    }
}

/// The state at one crash point, from which crash images are drawn.
pub struct CrashPoint<'a> {
    state: &'a State,
    index: u64,
}

impl CrashPoint<'_> {
    /// 1-based: the point just before the `index`-th operation (0: before any).
    pub fn index(&self) -> u64 {
        self.index
    }

    /// How many directory-entry operations and file pages are not yet durable.
    pub fn unsynced(&self) -> (usize, usize) {
        let pages = self.state.files.values().map(|f| f.dirty.len()).sum();
        (self.state.waiting.len(), pages)
    }

    /// One directory tree a power cut at this point could leave, drawn from `seed`: the
    /// durable entry operations and some of the others (as `mode` says), each file's durable
    /// bytes with an independent random subset of its unsynced pages. How much of what is
    /// unsynced survives is itself drawn per image: nothing, everything, each thing with
    /// probability 1/2 or a random share, or everything but one thing (one page per file,
    /// one entry operation in `Subset` mode) — the most adversarial reordering.
    pub fn image(&self, seed: u64, mode: ImageMode) -> CrashImage {
        let mut rng = SplitMix(seed ^ self.index.wrapping_mul(0x2545_f491_4f6c_dd1d));
        let keep = match rng.below(5) {
            0 => Keep::Share(0.0),
            1 => Keep::Share(1.0),
            2 => Keep::Share(0.5),
            3 => Keep::Share(rng.unit()),
            _ => Keep::AllButOne,
        };
        let state = self.state;
        let mut namespace = Namespace::default();
        let prefix = rng.below(state.waiting.len() as u64 + 1) as usize;
        let lost_op = rng.below(state.waiting.len().max(1) as u64) as usize;
        let mut waiting = state.waiting.iter().peekable();
        let mut kept_waiting = 0;
        for (i, op) in state.log.iter().enumerate() {
            let apply = if waiting.next_if_eq(&&i).is_some() {
                kept_waiting += 1;
                match mode {
                    ImageMode::Prefix => kept_waiting <= prefix,
                    ImageMode::Subset => keep.keeps(&mut rng, kept_waiting - 1 == lost_op),
                }
            } else {
                true
            };
            if apply {
                namespace.apply(&op.change);
            }
        }
        let mut image = CrashImage::default();
        let mut contents: HashMap<NodeId, Vec<u8>> = HashMap::new();
        let mut stack = vec![(ROOT, PathBuf::new())];
        while let Some((dir, path)) = stack.pop() {
            for (name, node) in namespace.children(dir) {
                let child = path.join(name);
                if state.dirs.contains(&node) {
                    image.dirs.push(child.clone());
                    stack.push((node, child));
                } else if let Some(data) = state.files.get(&node) {
                    let bytes = contents.entry(node).or_insert_with(|| data.crash_bytes(&mut rng, keep));
                    image.files.push((child, bytes.clone()));
                }
            }
        }
        image.dirs.sort();
        image.files.sort();
        image
    }
}

/// A directory tree a power cut could leave: paths relative to the root.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CrashImage {
    /// Every directory, parents before children.
    pub dirs: Vec<PathBuf>,
    pub files: Vec<(PathBuf, Vec<u8>)>,
}

impl CrashImage {
    /// The bytes of the file at `path` (relative to the root), if the image has it.
    pub fn file(&self, path: impl AsRef<Path>) -> Option<&[u8]> {
        self.files.iter().find(|(p, _)| p == path.as_ref()).map(|(_, b)| &b[..])
    }

    /// Writes the image into `dest` (created if missing; it must not hold these paths).
    pub fn write_to(&self, dest: &Path) -> io::Result<()> {
        let context = |path: &Path, e: io::Error| io::Error::new(e.kind(), format!("write crash image at {}: {e}", path.display()));
        OsVfs.create_dir(dest, true).map_err(|e| context(dest, e))?;
        for dir in &self.dirs {
            let path = dest.join(dir);
            OsVfs.create_dir(&path, false).map_err(|e| context(&path, e))?;
        }
        for (file, bytes) in &self.files {
            let path = dest.join(file);
            OsVfs.open(&path, OpenMode::CreateNew).and_then(|mut f| f.write_all(bytes)).map_err(|e| context(&path, e))?;
        }
        Ok(())
    }
}

/// How much of what is unsynced an image keeps.
#[derive(Clone, Copy)]
enum Keep {
    /// Each thing independently with this probability.
    Share(f64),
    /// Everything but one thing.
    AllButOne,
}

impl Keep {
    /// Is this thing kept? `is_the_lost_one`: it is the one `AllButOne` loses.
    fn keeps(self, rng: &mut SplitMix, is_the_lost_one: bool) -> bool {
        match self {
            Keep::Share(p) => rng.chance(p),
            Keep::AllButOne => !is_the_lost_one,
        }
    }
}

/// A small seeded generator (the engine has no `rand`): SplitMix64.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

impl Vfs for PowerLossVfs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<File> {
        let Some(parts) = self.shared.relative(path) else {
            return OsVfs.open(path, mode);
        };
        let mut state = self.shared.lock();
        let existing = state.resolve(&parts);
        let creates = match mode {
            OpenMode::CreateNew => true,
            OpenMode::OpenOrCreate => existing.is_none(),
            OpenMode::Read | OpenMode::ReadWrite | OpenMode::Directory => false,
        };
        if creates {
            let (parent, name) = state.resolve_parent(&parts)?;
            state.crash_point();
            let inner = OsVfs.open(path, mode)?;
            let node = state.new_node(false);
            state.record(Change::Link { parent, name, node });
            return Ok(self.file(inner, Handle::File(node)));
        }
        let inner = OsVfs.open(path, mode)?;
        let id = existing.ok_or_else(|| untracked(&parts))?;
        let handle = if state.dirs.contains(&id) { Handle::Dir(id) } else { Handle::File(id) };
        Ok(self.file(inner, handle))
    }

    fn map(&self, path: &Path) -> Result<ReadOnlyMap> {
        OsVfs.map(path)
    }

    fn map_range(&self, path: &Path, offset: u64, len: u64) -> Result<ReadOnlyMap> {
        OsVfs.map_range(path, offset, len)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (Some(from_parts), Some(to_parts)) = (self.shared.relative(from), self.shared.relative(to)) else {
            return OsVfs.rename(from, to);
        };
        let mut state = self.shared.lock();
        let node = state.resolve(&from_parts).ok_or_else(|| untracked(&from_parts))?;
        let from_entry = state.resolve_parent(&from_parts)?;
        let to_entry = state.resolve_parent(&to_parts)?;
        state.crash_point();
        OsVfs.rename(from, to)?;
        state.record(Change::Rename { from: from_entry, to: to_entry, node });
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.unlink(path, false)
    }

    fn create_dir(&self, path: &Path, recursive: bool) -> io::Result<()> {
        let Some(parts) = self.shared.relative(path) else {
            return OsVfs.create_dir(path, recursive);
        };
        let mut state = self.shared.lock();
        // Each directory made is its own entry operation, parents first.
        let first_missing = (0..=parts.len()).find(|&n| state.resolve(&parts[..n]).is_none()).unwrap_or(parts.len() + 1);
        if first_missing > parts.len() || (!recursive && first_missing < parts.len()) {
            // Exists already, or a parent is missing: the OS says which error.
            return OsVfs.create_dir(path, recursive);
        }
        for n in first_missing..=parts.len() {
            let (parent, name) = state.resolve_parent(&parts[..n])?;
            state.crash_point();
            let dir: PathBuf = self.shared.root.join(parts[..n].iter().collect::<PathBuf>());
            OsVfs.create_dir(&dir, false)?;
            let node = state.new_node(true);
            state.record(Change::Link { parent, name, node });
        }
        Ok(())
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        self.unlink(path, true)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        OsVfs.list_dir(path)
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (Some(from_parts), Some(to_parts)) = (self.shared.relative(from), self.shared.relative(to)) else {
            return OsVfs.hard_link(from, to);
        };
        let mut state = self.shared.lock();
        let node = state.resolve(&from_parts).ok_or_else(|| untracked(&from_parts))?;
        let (parent, name) = state.resolve_parent(&to_parts)?;
        state.crash_point();
        OsVfs.hard_link(from, to)?;
        state.record(Change::Link { parent, name, node });
        Ok(())
    }

    fn metadata(&self, path: &Path) -> io::Result<FileInfo> {
        OsVfs.metadata(path)
    }

    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        OsVfs.canonicalize(path)
    }
}

impl PowerLossVfs {
    fn file(&self, inner: File, handle: Handle) -> File {
        Box::new(PowerLossFile { inner, handle, shared: self.shared.clone() })
    }

    fn unlink(&self, path: &Path, is_dir: bool) -> io::Result<()> {
        let remove = |path: &Path| if is_dir { OsVfs.remove_dir(path) } else { OsVfs.remove_file(path) };
        let Some(parts) = self.shared.relative(path) else {
            return remove(path);
        };
        let mut state = self.shared.lock();
        let Some(node) = state.resolve(&parts) else {
            return remove(path); // not found (or not ours): the OS says which
        };
        let (parent, name) = state.resolve_parent(&parts)?;
        state.crash_point();
        remove(path)?;
        state.record(Change::Unlink { parent, name, node });
        Ok(())
    }
}

/// What an open file of a `PowerLossVfs` stands for in the shadow.
#[derive(Clone, Copy)]
enum Handle {
    File(NodeId),
    Dir(NodeId),
}

struct PowerLossFile {
    inner: File,
    handle: Handle,
    shared: Arc<Shared>,
}

impl Read for PowerLossFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

impl Write for PowerLossFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Handle::File(node) = self.handle else {
            return self.inner.write(buf);
        };
        if buf.is_empty() {
            return Ok(0);
        }
        let mut state = self.shared.lock();
        state.crash_point();
        let at = self.inner.stream_position()?;
        let written = self.inner.write(buf)?;
        if let Some(data) = state.files.get_mut(&node) {
            data.write_at(at, &buf[..written]);
        }
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Seek for PowerLossFile {
    fn seek(&mut self, position: io::SeekFrom) -> io::Result<u64> {
        self.inner.seek(position)
    }
}

impl PowerLossFile {
    fn sync(&self) -> io::Result<()> {
        let mut state = self.shared.lock();
        state.crash_point();
        match self.handle {
            Handle::File(node) => {
                if let Some(data) = state.files.get_mut(&node) {
                    data.sync();
                }
            }
            Handle::Dir(dir) => state.sync_dir(dir),
        }
        Ok(())
    }
}

impl VfsFile for PowerLossFile {
    fn sync_data(&self) -> io::Result<()> {
        self.sync()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut state = self.shared.lock();
        state.crash_point();
        self.inner.set_len(len)?;
        if let Handle::File(node) = self.handle {
            if let Some(data) = state.files.get_mut(&node) {
                data.set_len(len);
            }
        }
        Ok(())
    }

    fn file_len(&self) -> io::Result<u64> {
        self.inner.file_len()
    }

    fn try_lock(&self) -> io::Result<bool> {
        self.inner.try_lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, PowerLossVfs) {
        let dir = tempfile::tempdir().expect("tempdir");
        let vfs = PowerLossVfs::new(dir.path()).expect("vfs");
        (dir, vfs)
    }

    /// Every image of 64 seeds, in both modes.
    fn images(vfs: &PowerLossVfs) -> Vec<CrashImage> {
        vfs.crash_point_now(|point| {
            (0..64).flat_map(|seed| [point.image(seed, ImageMode::Prefix), point.image(seed, ImageMode::Subset)]).collect()
        })
    }

    fn create(vfs: &PowerLossVfs, path: &Path, bytes: &[u8]) -> File {
        let mut file = vfs.open(path, OpenMode::CreateNew).expect("create");
        file.write_all(bytes).expect("write");
        file
    }

    fn sync_dir(vfs: &PowerLossVfs, dir: &Path) {
        vfs.open(dir, OpenMode::Directory).expect("open dir").sync_all().expect("fsync dir");
    }

    /// A synced write of a file whose name is durable is in every image; an unsynced one
    /// is in some and missing from others; a new name is durable only after its
    /// directory's fsync.
    #[test]
    fn a_synced_write_is_never_lost_and_an_unsynced_one_can_be() {
        let (dir, vfs) = setup();
        let path = dir.path().join("f");
        let mut file = create(&vfs, &path, b"durable");
        file.sync_data().expect("sync");
        let names: BTreeSet<bool> = images(&vfs).iter().map(|i| i.file("f").is_some()).collect();
        assert_eq!(names, BTreeSet::from([false, true]), "the name is not durable before the directory's fsync");
        sync_dir(&vfs, dir.path());
        file.write_all(b" and not").expect("write");
        let seen: BTreeSet<Vec<u8>> = images(&vfs).iter().map(|i| i.file("f").expect("a durable name").to_vec()).collect();
        assert!(seen.iter().all(|b| b.starts_with(b"durable")), "the synced bytes are always there: {seen:?}");
        assert!(seen.contains(&b"durable"[..]) && seen.contains(&b"durable and not"[..]), "{seen:?}");
        file.sync_data().expect("sync");
        assert!(images(&vfs).iter().all(|i| i.file("f") == Some(b"durable and not")), "synced: in every image");
    }

    /// Unsynced pages are kept or lost one by one: holes (a later page kept, an earlier
    /// one lost, which reads as zeros past the durable end) appear.
    #[test]
    fn unsynced_pages_are_kept_or_lost_independently() {
        let (dir, vfs) = setup();
        let path = dir.path().join("f");
        let mut file = create(&vfs, &path, &[1u8; 64]);
        file.sync_data().expect("sync");
        sync_dir(&vfs, dir.path());
        file.write_all(&vec![2u8; 4 * PAGE as usize]).expect("write four pages");
        let mut holes = 0;
        let mut prefixes = 0;
        for image in images(&vfs) {
            let bytes = image.file("f").expect("durable name");
            assert_eq!(&bytes[..64], &[1u8; 64][..], "durable bytes stay");
            let pages: Vec<bool> = bytes.chunks(PAGE as usize).map(|p| p.contains(&2)).collect();
            if pages.windows(2).any(|w| !w[0] && w[1]) {
                holes += 1;
            } else if pages.contains(&true) && pages.contains(&false) {
                prefixes += 1;
            }
        }
        assert!(holes > 0 && prefixes > 0, "holes {holes}, prefixes {prefixes}");
    }

    /// A rename (or unlink) not followed by an fsync of its directory can be undone; after
    /// the fsync it cannot. The renamed file's node keeps its data under either name.
    #[test]
    fn a_rename_without_a_directory_fsync_can_be_undone() {
        let (dir, vfs) = setup();
        let (tmp, fin, gone) = (dir.path().join("tmp"), dir.path().join("final"), dir.path().join("gone"));
        create(&vfs, &tmp, b"new").sync_data().expect("sync");
        create(&vfs, &fin, b"old").sync_data().expect("sync");
        create(&vfs, &gone, b"x").sync_data().expect("sync");
        sync_dir(&vfs, dir.path());
        vfs.rename(&tmp, &fin).expect("rename");
        vfs.remove_file(&gone).expect("unlink");
        // (tmp's bytes, final's bytes, whether gone is there)
        type Seen = (Option<Vec<u8>>, Option<Vec<u8>>, bool);
        let seen: BTreeSet<Seen> = images(&vfs)
            .iter()
            .map(|i| (i.file("tmp").map(<[u8]>::to_vec), i.file("final").map(<[u8]>::to_vec), i.file("gone").is_some()))
            .collect();
        let (new, old) = (Some(b"new".to_vec()), Some(b"old".to_vec()));
        assert!(seen.contains(&(new.clone(), old.clone(), true)), "nothing durable: {seen:?}");
        assert!(seen.contains(&(None, new.clone(), false)), "all of it: {seen:?}");
        assert!(seen.contains(&(None, new.clone(), true)), "a prefix: the rename, not the unlink: {seen:?}");
        assert!(!seen.iter().any(|(t, f, _)| t.is_some() && f == &new), "the file is never under both names");
        sync_dir(&vfs, dir.path());
        assert!(images(&vfs).iter().all(|i| i.file("tmp").is_none() && i.file("final") == Some(b"new") && i.file("gone").is_none()));
    }

    /// A file in a new directory is in an image only when the directory's own name is
    /// durable; hard links share one node's data; crash points count the operations and
    /// the hook sees each one before it runs.
    #[test]
    fn new_directories_links_and_crash_points() {
        let (dir, vfs) = setup();
        let points = Arc::new(Mutex::new(Vec::new()));
        let seen = points.clone();
        vfs.on_crash_point(move |point| seen.lock().unwrap_or_else(|p| p.into_inner()).push((point.index(), point.unsynced())));
        let sub = dir.path().join("a/b");
        vfs.create_dir(&sub, true).expect("mkdir -p");
        let file = create(&vfs, &sub.join("f"), b"data");
        file.sync_data().expect("sync");
        sync_dir(&vfs, &sub);
        vfs.hard_link(&sub.join("f"), &dir.path().join("a/link")).expect("link");
        vfs.clear_crash_point_hook();
        let recorded = points.lock().unwrap_or_else(|p| p.into_inner()).clone();
        // mkdir a, mkdir a/b, create, write, fdatasync, fsync a/b, link.
        assert_eq!(recorded.iter().map(|(i, _)| *i).collect::<Vec<_>>(), (1..=7).collect::<Vec<_>>());
        assert_eq!(recorded[2].1, (2, 0), "before the create: two mkdirs wait, no page");
        assert_eq!(recorded[4].1, (3, 1), "before the fdatasync: one dirty page");
        for image in images(&vfs) {
            let has_b = image.dirs.contains(&PathBuf::from("a/b"));
            assert_eq!(image.file("a/b/f").is_some(), has_b, "a/b/f is durable once a/b's name is");
            if has_b {
                assert_eq!(image.file("a/b/f"), Some(&b"data"[..]));
            }
            if let Some(link) = image.file("a/link") {
                assert_eq!(link, b"data", "the link shares the node's data");
            }
            let copy = tempfile::tempdir().expect("tempdir");
            image.write_to(copy.path()).expect("write image");
        }
        sync_dir(&vfs, dir.path());
        sync_dir(&vfs, &dir.path().join("a"));
        let all = images(&vfs);
        assert!(all.iter().all(|i| i.file("a/b/f") == Some(b"data") && i.file("a/link") == Some(b"data")), "everything durable");
    }
}
