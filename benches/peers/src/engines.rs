//! One small trait and an adapter per engine. Every adapter stores a record as its key and
//! a value of content bytes followed by the embedding's little-endian f32 bytes (strata
//! stores the embedding as its own field and hands back the same bytes), so that every
//! engine reads back exactly the same bytes for a key.

use crate::data;
use std::path::Path;

use redb::{ReadableDatabase, ReadableTable};

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// What `Engine::scan` calls per record: key, content, embedding.
pub type Visit<'a> = dyn FnMut(&[u8], &[u8], &[f32]) + 'a;

/// One record as the workload writes it.
pub struct Item<'a> {
    pub key: &'a [u8],
    pub content: &'a [u8],
    pub embedding: &'a [f32],
}

/// What the runner asks of an engine.
pub trait Engine: Sync {
    /// Writes `items` as one transaction (or batch), not necessarily durable.
    fn load(&self, items: &[Item<'_>]) -> Result<()>;
    /// Everything written so far is durable.
    fn sync(&self) -> Result<()>;
    /// Writes one record durably (fsync before return) on its own.
    fn put_durable(&self, item: &Item<'_>) -> Result<()>;
    /// Copies the value of `key` (content ++ embedding bytes) into `out`; false if missing.
    fn get(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool>;
    /// Calls `each(key, content, embedding)` for every record in key order, without copying:
    /// the key-value engines pass their whole value as `content` and no embedding.
    fn scan(&self, each: &mut Visit<'_>) -> Result<()>;
}

/// The engines the runner measures by default; "rocksdb" only with `--features rocksdb`.
pub const ENGINES: &[&str] = &[
    "strata",
    "lmdb",
    "redb",
    "fjall",
    "sled",
    #[cfg(feature = "rocksdb")]
    "rocksdb",
];

/// Opens (creating) engine `name` in `dir`. `durable`: the handle is for durable puts
/// (strata then opens with `Durability::Sync`, whose group commit shares fsyncs; the others
/// make each put durable the way their documentation says).
pub fn open(name: &str, dir: &Path, dim: usize, durable: bool) -> Result<Box<dyn Engine>> {
    Ok(match name {
        "strata" => Box::new(Strata::open(dir, dim, durable)?),
        "lmdb" => Box::new(Lmdb::open(dir)?),
        "redb" => Box::new(Redb::open(dir)?),
        "fjall" => Box::new(Fjall::open(dir)?),
        "sled" => Box::new(Sled::open(dir)?),
        #[cfg(feature = "rocksdb")]
        "rocksdb" => Box::new(Rocks::open(dir)?),
        other => return Err(format!("unknown engine {other}").into()),
    })
}

fn value_of(item: &Item<'_>) -> Vec<u8> {
    let mut value = Vec::with_capacity(item.content.len() + item.embedding.len() * 4);
    value.extend_from_slice(item.content);
    value.extend_from_slice(data::embedding_bytes(item.embedding));
    value
}

// ---- strata -------------------------------------------------------------------------------

/// strata with the options a user gets (`auto_compact` on): `Durability::None` for the
/// bulk load (then `sync()`), `Durability::Sync` for durable puts (durability is per handle).
pub struct Strata {
    pub db: strata::Db,
    sync_each: bool,
}

impl Strata {
    fn open(dir: &Path, dim: usize, durable: bool) -> Result<Strata> {
        let durability = if durable { strata::Durability::Sync } else { strata::Durability::None };
        let options = strata::Options::new().embedding_dim(dim).durability(durability);
        Ok(Strata { db: strata::Db::open(dir, options)?, sync_each: durable })
    }
}

impl Engine for Strata {
    fn load(&self, items: &[Item<'_>]) -> Result<()> {
        let mut batch = strata::Batch::new();
        for item in items {
            batch.put(item.key, item.content, Some(item.embedding));
        }
        Ok(self.db.write(batch)?)
    }
    fn sync(&self) -> Result<()> {
        Ok(self.db.sync()?)
    }
    fn put_durable(&self, item: &Item<'_>) -> Result<()> {
        self.db.put(item.key, item.content, Some(item.embedding))?;
        if !self.sync_each {
            self.db.sync()?;
        }
        Ok(())
    }
    fn get(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        let Some(record) = self.db.get(key)? else { return Ok(false) };
        out.clear();
        out.extend_from_slice(record.content());
        out.extend_from_slice(data::embedding_bytes(record.embedding().unwrap_or(&[])));
        Ok(true)
    }
    fn scan(&self, each: &mut Visit<'_>) -> Result<()> {
        for record in self.db.iter() {
            let record = record?;
            each(record.key(), record.content(), record.embedding().unwrap_or(&[]));
        }
        Ok(())
    }
}

// ---- LMDB (heed) --------------------------------------------------------------------------

pub struct Lmdb {
    env: heed::Env,
    db: heed::Database<heed::types::Bytes, heed::types::Bytes>,
}

impl Lmdb {
    fn open(dir: &Path) -> Result<Lmdb> {
        std::fs::create_dir_all(dir)?;
        // SAFETY: heed marks `open` unsafe because LMDB's map must not be opened twice in one
        // process or modified by another; this child process opens this directory once.
        let env = unsafe { heed::EnvOpenOptions::new().map_size(64 << 30).max_dbs(1).open(dir)? };
        let mut wtxn = env.write_txn()?;
        let db = env.create_database(&mut wtxn, None)?;
        wtxn.commit()?;
        Ok(Lmdb { env, db })
    }
}

impl Engine for Lmdb {
    fn load(&self, items: &[Item<'_>]) -> Result<()> {
        let mut wtxn = self.env.write_txn()?;
        for item in items {
            self.db.put(&mut wtxn, item.key, &value_of(item))?;
        }
        Ok(wtxn.commit()?)
    }
    fn sync(&self) -> Result<()> {
        Ok(self.env.force_sync()?)
    }
    fn put_durable(&self, item: &Item<'_>) -> Result<()> {
        let mut wtxn = self.env.write_txn()?;
        self.db.put(&mut wtxn, item.key, &value_of(item))?;
        Ok(wtxn.commit()?) // LMDB's default: the commit fsyncs
    }
    fn get(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        let rtxn = self.env.read_txn()?;
        let Some(value) = self.db.get(&rtxn, key)? else { return Ok(false) };
        out.clear();
        out.extend_from_slice(value);
        Ok(true)
    }
    fn scan(&self, each: &mut Visit<'_>) -> Result<()> {
        let rtxn = self.env.read_txn()?;
        for entry in self.db.iter(&rtxn)? {
            let (key, value) = entry?;
            each(key, value, &[]);
        }
        Ok(())
    }
}

// ---- redb ---------------------------------------------------------------------------------

const REDB_TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("records");

pub struct Redb {
    db: redb::Database,
}

impl Redb {
    fn open(dir: &Path) -> Result<Redb> {
        std::fs::create_dir_all(dir)?;
        let db = redb::Database::create(dir.join("redb"))?;
        let txn = db.begin_write()?;
        txn.open_table(REDB_TABLE)?;
        txn.commit()?;
        Ok(Redb { db })
    }
}

impl Engine for Redb {
    fn load(&self, items: &[Item<'_>]) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(REDB_TABLE)?;
            for item in items {
                table.insert(item.key, value_of(item).as_slice())?;
            }
        }
        Ok(txn.commit()?) // redb's default durability: the commit is durable
    }
    fn sync(&self) -> Result<()> {
        Ok(()) // every commit above was durable
    }
    fn put_durable(&self, item: &Item<'_>) -> Result<()> {
        self.load(std::slice::from_ref(item))
    }
    fn get(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(REDB_TABLE)?;
        let Some(value) = table.get(key)? else { return Ok(false) };
        out.clear();
        out.extend_from_slice(value.value());
        Ok(true)
    }
    fn scan(&self, each: &mut Visit<'_>) -> Result<()> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(REDB_TABLE)?;
        for entry in table.iter()? {
            let (key, value) = entry?;
            each(key.value(), value.value(), &[]);
        }
        Ok(())
    }
}

// ---- fjall --------------------------------------------------------------------------------

pub struct Fjall {
    db: fjall::Database,
    keyspace: fjall::Keyspace,
}

impl Fjall {
    fn open(dir: &Path) -> Result<Fjall> {
        let db = fjall::Database::builder(dir).open()?;
        let keyspace = db.keyspace("records", fjall::KeyspaceCreateOptions::default)?;
        Ok(Fjall { db, keyspace })
    }
}

impl Engine for Fjall {
    fn load(&self, items: &[Item<'_>]) -> Result<()> {
        let mut batch = self.db.batch();
        for item in items {
            batch.insert(&self.keyspace, item.key, value_of(item));
        }
        Ok(batch.commit()?)
    }
    fn sync(&self) -> Result<()> {
        Ok(self.db.persist(fjall::PersistMode::SyncAll)?)
    }
    fn put_durable(&self, item: &Item<'_>) -> Result<()> {
        self.keyspace.insert(item.key, value_of(item))?;
        self.sync()
    }
    fn get(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        let Some(value) = self.keyspace.get(key)? else { return Ok(false) };
        out.clear();
        out.extend_from_slice(&value);
        Ok(true)
    }
    fn scan(&self, each: &mut Visit<'_>) -> Result<()> {
        for guard in self.keyspace.iter() {
            let (key, value) = guard.into_inner()?;
            each(&key, &value, &[]);
        }
        Ok(())
    }
}

// ---- sled ---------------------------------------------------------------------------------

pub struct Sled {
    db: sled::Db,
}

impl Sled {
    fn open(dir: &Path) -> Result<Sled> {
        Ok(Sled { db: sled::open(dir)? })
    }
}

impl Engine for Sled {
    fn load(&self, items: &[Item<'_>]) -> Result<()> {
        let mut batch = sled::Batch::default();
        for item in items {
            batch.insert(item.key, value_of(item));
        }
        Ok(self.db.apply_batch(batch)?)
    }
    fn sync(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }
    fn put_durable(&self, item: &Item<'_>) -> Result<()> {
        self.db.insert(item.key, value_of(item))?;
        self.sync()
    }
    fn get(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        let Some(value) = self.db.get(key)? else { return Ok(false) };
        out.clear();
        out.extend_from_slice(&value);
        Ok(true)
    }
    fn scan(&self, each: &mut Visit<'_>) -> Result<()> {
        for entry in self.db.iter() {
            let (key, value) = entry?;
            each(&key, &value, &[]);
        }
        Ok(())
    }
}

// ---- RocksDB (rocksdb crate, `--features rocksdb`) ----------------------------------------

/// RocksDB with a standard configuration a user would pick: `create_if_missing`,
/// `increase_parallelism(cores)` (flush and compaction threads), the default leveled
/// compaction and memtable (64 MiB write buffer), no compression (strata and the other engines
/// don't compress either; the build has no codecs), block-based tables with a 64 MiB LRU
/// block cache and a 10 bits/key Bloom filter, the WAL on. Loads are `WriteBatch`es written
/// without sync, `sync()` is `flush_wal(true)`; a durable put is a put with
/// `WriteOptions::set_sync(true)` (RocksDB's group commit shares fsyncs between threads).
/// Dropping the handle leaves the memtable in the WAL: the reopen replays it.
#[cfg(feature = "rocksdb")]
pub struct Rocks {
    db: rocksdb::DB,
}

#[cfg(feature = "rocksdb")]
impl Rocks {
    fn open(dir: &Path) -> Result<Rocks> {
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_block_cache(&rocksdb::Cache::new_lru_cache(64 << 20));
        table.set_bloom_filter(10.0, false);
        let mut options = rocksdb::Options::default();
        options.create_if_missing(true);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        options.increase_parallelism(i32::try_from(cores).unwrap_or(i32::MAX));
        options.set_compression_type(rocksdb::DBCompressionType::None);
        options.set_block_based_table_factory(&table);
        Ok(Rocks { db: rocksdb::DB::open(&options, dir)? })
    }
}

#[cfg(feature = "rocksdb")]
impl Engine for Rocks {
    fn load(&self, items: &[Item<'_>]) -> Result<()> {
        let mut batch = rocksdb::WriteBatch::default();
        for item in items {
            batch.put(item.key, value_of(item));
        }
        Ok(self.db.write(batch)?)
    }
    fn sync(&self) -> Result<()> {
        Ok(self.db.flush_wal(true)?)
    }
    fn put_durable(&self, item: &Item<'_>) -> Result<()> {
        let mut options = rocksdb::WriteOptions::default();
        options.set_sync(true);
        Ok(self.db.put_opt(item.key, value_of(item), &options)?)
    }
    fn get(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        let Some(value) = self.db.get_pinned(key)? else { return Ok(false) };
        out.clear();
        out.extend_from_slice(&value);
        Ok(true)
    }
    fn scan(&self, each: &mut Visit<'_>) -> Result<()> {
        // The raw iterator hands out slices into RocksDB's blocks (no copy per entry).
        let mut iter = self.db.raw_iterator();
        iter.seek_to_first();
        while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            each(key, value, &[]);
            iter.next();
        }
        Ok(iter.status()?)
    }
}
