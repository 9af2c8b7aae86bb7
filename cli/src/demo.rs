//! `strata demo`: builds a database of agent memories (generated locally from a fixed seed:
//! text of 64 B to 4 KiB about one of a few dozen topics, and an embedding near that
//! topic's centroid, so that neighbours share a topic), then runs point gets, prefix scans
//! and similarity searches, seals, compacts, reopens and verifies, and ends with a summary:
//! records per tier, disk vs logical bytes, and each operation's throughput next to this
//! machine's raw disk and memory figures, measured in the same run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use strata::{Batch, Db, Durability, Options, Search};

use crate::args::DemoArgs;
use crate::commands::tier_table;
use crate::failure::{Failure, IoContext};
use crate::machine::{self, Machine};
use crate::output::{self, show_bytes, show_size, Table};

/// `println!` unless `$quiet` (the bench's `--json` keeps stdout for its JSON).
macro_rules! say {
    ($quiet:expr, $($arg:tt)*) => {
        if !$quiet {
            println!($($arg)*);
        }
    };
}

const SEED: u64 = 0x5354_5241_5441; // "STRATA"
const USERS: usize = 500;
const LOAD_BATCH: usize = 1000;
const CONTENT_MIN: usize = 64;
const CONTENT_MAX: usize = 4096;

/// What each memory can be about: a name and sentences an agent might have remembered.
const TOPICS: &[(&str, &[&str])] = &[
    (
        "coffee",
        &[
            "The user takes their flat white with oat milk.",
            "They asked for a pour-over recipe at a 1:16 ratio.",
            "Prefers light roasts from Ethiopia, fruity and bright.",
            "Their espresso machine needs descaling every month.",
            "Switched to decaf after 3 pm to sleep better.",
            "Bought a burr grinder and grinds beans fresh each morning.",
        ],
    ),
    (
        "travel",
        &[
            "Booked a window seat on the morning train to Lyon.",
            "They want a hotel within walking distance of the old town.",
            "Passport expires next spring; renewal reminder set.",
            "Prefers aisle seats on flights longer than four hours.",
            "Asked for a packing list for a week of hiking in the Alps.",
            "Their favourite city so far is Lisbon, for the light and the tiles.",
        ],
    ),
    (
        "rust programming",
        &[
            "The borrow checker rejected a second mutable reference in the parser.",
            "They asked how to share state across threads with Arc and Mutex.",
            "Cargo build was slow until they enabled incremental compilation.",
            "Prefers thiserror for library errors and anyhow in binaries.",
            "Their crate forbids unsafe code and uses bytemuck for casts.",
            "Debugged a lifetime error by splitting the borrow into two scopes.",
        ],
    ),
    (
        "gardening",
        &[
            "Tomatoes on the balcony need watering twice a day in July.",
            "They planted basil next to the tomatoes to keep pests away.",
            "The lemon tree lost leaves after a cold night; moved it indoors.",
            "Asked when to prune the roses: late winter, before new growth.",
            "Compost bin is ready; turn it every two weeks.",
            "Wants a shade-tolerant ground cover for the north side.",
        ],
    ),
    (
        "fitness",
        &[
            "Runs 5 km every Tuesday and Thursday before work.",
            "Knee hurts after long runs; suggested softer trails.",
            "Goal: a half marathon under two hours by October.",
            "Does yoga on Sunday mornings to stretch the hamstrings.",
            "Tracks protein intake, aiming for 120 g a day.",
            "Swapped the gym for cycling to the office.",
        ],
    ),
    (
        "cooking",
        &[
            "Makes a slow-cooked ragu every Sunday for the week.",
            "Allergic to peanuts; always check sauces for nut oils.",
            "Asked for a vegetarian lasagne with spinach and ricotta.",
            "Their sourdough starter is called Gerald and lives in the fridge.",
            "Prefers cast iron pans; never put them in the dishwasher.",
            "Wants quick dinners under 30 minutes on weekdays.",
        ],
    ),
    (
        "music",
        &[
            "Learning the cello; practises scales for 20 minutes a day.",
            "Favourite album is Kind of Blue by Miles Davis.",
            "Asked for jazz standards that suit a beginner pianist.",
            "Goes to the symphony on the first Friday of each month.",
            "Their playlist for focus is ambient and without lyrics.",
            "Restringing the guitar with lighter gauge strings.",
        ],
    ),
    (
        "finance",
        &[
            "Sets aside 15 percent of the salary into index funds.",
            "Asked how a Roth IRA differs from a traditional one.",
            "Rent is due on the first; reminder two days before.",
            "Wants to pay off the car loan early to save interest.",
            "Tracks spending in a spreadsheet by category each month.",
            "Emergency fund covers six months of expenses.",
        ],
    ),
    (
        "family",
        &[
            "Their daughter Mia starts school in September.",
            "Mother's birthday is on the 14th of March; she likes orchids.",
            "Family dinner every Friday at the grandparents' house.",
            "Brother lives in Toronto and visits at Christmas.",
            "Planning a surprise party for their parents' anniversary.",
            "The kids are allergic to cats, so no pets for now.",
        ],
    ),
    (
        "work meetings",
        &[
            "Weekly sync with the design team moved to Wednesdays at 10.",
            "They prefer meeting notes shared as a bullet list afterwards.",
            "The quarterly review deck is due next Friday.",
            "Asked to block focus time every morning until noon.",
            "Manager is Priya; one-on-ones are every other Monday.",
            "Standups are capped at 15 minutes; no laptops.",
        ],
    ),
    (
        "books",
        &[
            "Reading The Left Hand of Darkness for the book club.",
            "Prefers paper books; the e-reader is for travel only.",
            "Asked for novels like Station Eleven, hopeful after a collapse.",
            "Keeps a list of quotes from every book finished this year.",
            "Wants to read more history, starting with the Silk Roads.",
            "The library hold on Piranesi is ready for pickup.",
        ],
    ),
    (
        "health",
        &[
            "Dentist appointment on the 3rd at 9:30; flossing reminder.",
            "Takes vitamin D in winter, on the doctor's advice.",
            "Gets migraines when skipping lunch; keep snacks nearby.",
            "Annual check-up is in May; fasting blood test beforehand.",
            "Asked for tips on sleeping better: no screens after 10 pm.",
            "Allergic to penicillin; noted for every prescription.",
        ],
    ),
    (
        "home repair",
        &[
            "The kitchen tap drips; a new cartridge is on order.",
            "Painted the hallway in a warm white, two coats.",
            "Asked how to bleed the radiators before winter.",
            "The smoke alarm battery chirps; replace with a 9 V.",
            "Wants to insulate the attic to cut heating bills.",
            "The front door sticks in humid weather; plane the edge.",
        ],
    ),
    (
        "photography",
        &[
            "Shoots with a 35 mm prime lens, mostly street scenes.",
            "Asked how to expose for a sunset without losing the sky.",
            "Edits photos in Lightroom with a film-like preset.",
            "Wants to print a photo book of the trip to Iceland.",
            "Learning manual focus for macro shots of insects.",
            "Backs up the photo library to two drives every Sunday.",
        ],
    ),
    (
        "language learning",
        &[
            "Practises Spanish on the app for ten minutes a day.",
            "Asked for the difference between ser and estar again.",
            "Joined a conversation group that meets on Thursday evenings.",
            "Wants to read a simple novel in Spanish by summer.",
            "Struggles with the subjunctive; more examples helped.",
            "Watching Spanish films with Spanish subtitles on.",
        ],
    ),
    (
        "pets",
        &[
            "The dog, Biscuit, needs his heartworm pill on the 1st.",
            "Walks Biscuit twice a day, morning and evening.",
            "Asked for a grain-free food for a dog with a sensitive stomach.",
            "The vet visit for vaccinations is booked for next month.",
            "Biscuit is afraid of fireworks; keep him inside on holidays.",
            "Looking for a dog sitter for the week in Lisbon.",
        ],
    ),
];
const FILLER: &[&str] = &[
    "Noted during the conversation.",
    "Mentioned in passing.",
    "Worth remembering for next time.",
    "They said this twice, so it matters.",
    "Confirmed later the same day.",
    "Follow up if it comes up again.",
];

/// A fast generator for the embedding noise (xorshift64*): tens of millions of values.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40; // 24 bits
        bits as f32 / (1u64 << 23) as f32 - 1.0 // uniform in [-1, 1)
    }
}

/// The generator of the demo's records.
struct Memories {
    dim: usize,
    centroids: Vec<Vec<f32>>,
    rng: rand::rngs::StdRng,
    noise: Noise,
}

struct Memory {
    key: String,
    content: String,
    embedding: Vec<f32>,
}

impl Memories {
    fn new(dim: usize) -> Memories {
        let mut rng = rand::rngs::StdRng::seed_from_u64(SEED);
        let centroids = TOPICS.iter().map(|_| (0..dim).map(|_| rng.gen_range(-1.0f32..1.0)).collect()).collect();
        Memories { dim, centroids, rng, noise: Noise(SEED | 1) }
    }

    fn key(i: usize) -> String {
        format!("user/{:04}/mem/{i:07}", i % USERS)
    }

    fn topic_of(i: usize) -> usize {
        (i / USERS * 7 + i * 13) % TOPICS.len()
    }

    /// Record `i` (the same for every run: keys and topics from `i`, text and noise from the
    /// seeded generators in order).
    fn next(&mut self, i: usize) -> Memory {
        let topic = Self::topic_of(i);
        let (name, sentences) = TOPICS[topic];
        // Log-uniform length: most memories are short, a few are long.
        let target = (CONTENT_MIN as f64 * (CONTENT_MAX as f64 / CONTENT_MIN as f64).powf(self.rng.gen::<f64>())) as usize;
        let mut content = format!("[{name}] ");
        while content.len() < target {
            let sentence = if self.rng.gen_ratio(1, 5) {
                FILLER[self.rng.gen_range(0..FILLER.len())]
            } else {
                sentences[self.rng.gen_range(0..sentences.len())]
            };
            content.push_str(sentence);
            content.push(' ');
        }
        let mut cut = target.min(content.len());
        while !content.is_char_boundary(cut) {
            cut -= 1;
        }
        content.truncate(cut);
        let centroid = &self.centroids[topic];
        let embedding = (0..self.dim).map(|d| centroid[d] + 0.45 * self.noise.next()).collect();
        Memory { key: Self::key(i), content, embedding }
    }
}

/// One row of the closing summary: what was done, how much, how fast.
pub(crate) struct Measured {
    pub(crate) operation: String,
    pub(crate) count: u64,
    pub(crate) elapsed: Duration,
    /// Bytes the operation moved (written or read), for its MB/s.
    pub(crate) bytes: u64,
    /// Against the disk (writes) or memory (reads) figure.
    pub(crate) limit: Limit,
}

#[derive(Clone, Copy)]
pub(crate) enum Limit {
    Disk,
    Memory,
    Fsync,
}

fn database_dir(dir: Option<PathBuf>) -> Result<PathBuf, Failure> {
    match dir {
        Some(dir) => {
            if dir.exists() && std::fs::read_dir(&dir).at("list", &dir)?.next().is_some() {
                return Err(Failure::new(format!("{} exists and is not empty; the demo builds a new database", dir.display())));
            }
            Ok(dir)
        }
        None => Ok(tempfile::Builder::new().prefix("strata-demo-").tempdir().map_err(|e| Failure::new(format!("temp dir: {e}")))?.keep()),
    }
}

pub fn run(args: DemoArgs) -> Result<(), Failure> {
    if args.records == 0 || args.dim == 0 {
        return Err(Failure::new("--records and --dim must be at least 1"));
    }
    let started = Instant::now();
    let dir = database_dir(args.dir)?;
    println!("strata demo: {} agent memories, {}-dim embeddings, in {}\n", args.records, args.dim, dir.display());

    let spinner = output::spinner("measuring this machine's disk and memory");
    // Probes sized to the run (a small demo stays quick), at most 128 MiB of disk, 256 of memory.
    let probe = (args.records << 12).clamp(8 << 20, 128 << 20);
    let machine = machine::measure(&dir, probe, (probe * 2).max(32 << 20))?;
    spinner.finish_and_clear();
    println!(
        "this machine: sequential write + fdatasync {:.0} MB/s, {:.0} fdatasyncs/s (4 KiB in place), memory read {:.1} GB/s (one thread)\n",
        machine.disk_write_mb_s, machine.fsyncs_per_s, machine.memory_read_gb_s
    );

    let mut measured = Vec::new();
    let db = Db::open(&dir, Options::new().embedding_dim(args.dim).durability(Durability::None).auto_compact(false))?;
    measured.push(load(&db, args.records, args.dim, false)?);
    measured.push(point_gets(&db, args.records, false)?);
    measured.push(prefix_scans(&db, args.records, false)?);
    measured.push(searches(&db, args.dim, "before compaction: hot and warm tiers")?);

    let start = Instant::now();
    db.seal()?;
    let stats = db.stats();
    println!("sealed: {} records warm, {} hot", stats.warm.records, stats.hot.records);
    let spinner = output::spinner("compacting into columnar cold segments");
    let start_compact = Instant::now();
    db.compact()?;
    spinner.finish_and_clear();
    let compacted = db.stats();
    measured.push(Measured {
        operation: "seal + compact (cold segments written)".into(),
        count: compacted.cold.records,
        elapsed: start.elapsed(),
        bytes: compacted.cold.disk_bytes,
        limit: Limit::Disk,
    });
    println!(
        "compacted in {:.2} s: {} records in {} cold segments ({} on disk)\n",
        start_compact.elapsed().as_secs_f64(),
        compacted.cold.records,
        compacted.cold.segments,
        show_size(compacted.cold.disk_bytes)
    );
    db.close()?;

    let start = Instant::now();
    let db = Db::open(&dir, Options::new().auto_compact(false))?;
    let reopen = start.elapsed();
    println!("reopened in {:.1} ms", reopen.as_secs_f64() * 1e3);
    measured.push(point_gets(&db, args.records, false)?);
    measured.push(searches(&db, args.dim, "after compaction: the cold tier")?);
    measured.push(verify(&db)?);
    measured.push(durable_puts(&dir)?);

    summary(&db, &machine, &measured, reopen);
    db.close()?;
    println!("\ndone in {:.1} s; the database is kept in {}", started.elapsed().as_secs_f64(), dir.display());
    println!("try: strata search {} --like {} -k 5", dir.display(), Memories::key(42));
    Ok(())
}

pub(crate) fn load(db: &Db, records: usize, dim: usize, quiet: bool) -> Result<Measured, Failure> {
    let mut memories = Memories::new(dim);
    let bar = output::progress(records as u64, "writing memories");
    let mut writing = Duration::ZERO;
    let mut bytes = 0u64;
    let mut i = 0;
    while i < records {
        let end = (i + LOAD_BATCH).min(records);
        let mut batch = Batch::new();
        for j in i..end {
            let memory = memories.next(j);
            bytes += (memory.key.len() + memory.content.len() + memory.embedding.len() * 4) as u64;
            batch.put(memory.key.as_bytes(), memory.content.as_bytes(), Some(&memory.embedding));
        }
        let start = Instant::now();
        db.write(batch)?;
        writing += start.elapsed();
        bar.set_position(end as u64);
        i = end;
    }
    let start = Instant::now();
    db.sync()?;
    writing += start.elapsed();
    bar.finish_and_clear();
    say!(
        quiet,
        "wrote {records} memories ({} logical) in {:.2} s, in batches of {LOAD_BATCH}, then one sync",
        show_size(bytes),
        writing.as_secs_f64()
    );
    Ok(Measured { operation: "bulk load (batches, then sync)".into(), count: records as u64, elapsed: writing, bytes, limit: Limit::Disk })
}

pub(crate) fn point_gets(db: &Db, records: usize, quiet: bool) -> Result<Measured, Failure> {
    let gets = records.min(50_000);
    let mut rng = rand::rngs::StdRng::seed_from_u64(SEED + 1);
    let keys: Vec<String> = (0..gets).map(|_| Memories::key(rng.gen_range(0..records))).collect();
    let start = Instant::now();
    let mut bytes = 0u64;
    for key in &keys {
        let record = db.get(key.as_bytes())?.ok_or_else(|| Failure::new(format!("demo record {key} is missing")))?;
        bytes += record.content().len() as u64;
    }
    let elapsed = start.elapsed();
    let tier = if db.stats().cold.records > 0 { "cold" } else { "hot/warm" };
    let sample = db.get(keys[0].as_bytes())?.ok_or_else(|| Failure::new("sample record missing"))?;
    say!(quiet, "get {} -> {}", keys[0], show_bytes(sample.content(), 90));
    say!(quiet, "{gets} random point gets ({tier}) in {:.1} ms\n", elapsed.as_secs_f64() * 1e3);
    Ok(Measured { operation: format!("point gets ({tier})"), count: gets as u64, elapsed, bytes, limit: Limit::Memory })
}

pub(crate) fn prefix_scans(db: &Db, records: usize, quiet: bool) -> Result<Measured, Failure> {
    let users = USERS.min(records);
    let start = Instant::now();
    let mut count = 0u64;
    let mut bytes = 0u64;
    for user in 0..users {
        for record in db.prefix(format!("user/{user:04}/").as_bytes()) {
            let record = record?;
            count += 1;
            bytes += (record.key().len() + record.content().len() + record.embedding().map_or(0, |e| e.len() * 4)) as u64;
        }
    }
    let elapsed = start.elapsed();
    if !quiet {
        println!("prefix scan user/0042/ (first 3 of {}):", db.prefix(b"user/0042/").count());
        for record in db.prefix(b"user/0042/").take(3) {
            let record = record?;
            println!("  {}  {}", show_bytes(record.key(), 30), show_bytes(record.content(), 80));
        }
    }
    say!(quiet, "{users} prefix scans, {count} records in {:.1} ms\n", elapsed.as_secs_f64() * 1e3);
    Ok(Measured { operation: "prefix scans (one per user)".into(), count, elapsed, bytes, limit: Limit::Memory })
}

/// Three searches with their hits shown (a topic's centroid, a record's own embedding), then
/// a timed run of queries.
fn searches(db: &Db, dim: usize, when: &str) -> Result<Measured, Failure> {
    let memories = Memories::new(dim);
    println!("similarity search, {when}:");
    println!("  memories about \"{}\" (the topic's centroid as the query):", TOPICS[0].0);
    show_hits(db, &Search::new(&memories.centroids[0]).k(3))?;
    println!("  user 0042's memories about \"{}\" (--prefix user/0042/):", TOPICS[5].0);
    show_hits(db, &Search::new(&memories.centroids[5]).k(3).prefix(b"user/0042/"))?;
    let like = Memories::key(42);
    let record = db.get(like.as_bytes())?.ok_or_else(|| Failure::new("demo record missing"))?;
    let embedding = record.embedding().map(<[f32]>::to_vec).ok_or_else(|| Failure::new("demo record without embedding"))?;
    println!("  like {like} ({}):", show_bytes(record.content(), 60));
    show_hits(db, &Search::new(&embedding).k(3))?;
    timed_searches(db, dim, false)
}

/// 16 exact top-10 searches (topic centroids as queries).
pub(crate) fn timed_searches(db: &Db, dim: usize, quiet: bool) -> Result<Measured, Failure> {
    let memories = Memories::new(dim);
    let stats = db.stats();
    let queries = 16;
    let start = Instant::now();
    for q in 0..queries {
        db.search(&Search::new(&memories.centroids[q % TOPICS.len()]).k(10))?;
    }
    let elapsed = start.elapsed();
    let scanned = stats.live_records * (dim as u64) * 4;
    say!(quiet, "{queries} exact top-10 searches over {} records in {:.1} ms\n", stats.live_records, elapsed.as_secs_f64() * 1e3);
    let tier = if stats.cold.records > 0 { "cold" } else { "hot/warm" };
    Ok(Measured {
        operation: format!("exact searches, k=10 ({tier})"),
        count: queries as u64,
        elapsed,
        bytes: scanned * queries as u64,
        limit: Limit::Memory,
    })
}

fn show_hits(db: &Db, search: &Search<'_>) -> Result<(), Failure> {
    for hit in db.search(search)? {
        let content = db.get(&hit.key)?.map(|r| show_bytes(r.content(), 80)).unwrap_or_default();
        println!("    {:.3}  {}  {}", hit.score, show_bytes(&hit.key, 24), content);
    }
    Ok(())
}

fn verify(db: &Db) -> Result<Measured, Failure> {
    let spinner = output::spinner("verifying every checksum");
    let start = Instant::now();
    let report = db.verify()?;
    let elapsed = start.elapsed();
    spinner.finish_and_clear();
    println!(
        "verified {} files, {} records, {} in {:.2} s: every checksum held\n",
        report.files_checked,
        report.records_checked,
        show_size(report.bytes_checked),
        elapsed.as_secs_f64()
    );
    Ok(Measured {
        operation: "verify (every checksum)".into(),
        count: report.records_checked,
        elapsed,
        bytes: report.bytes_checked,
        limit: Limit::Memory,
    })
}

/// Durable single puts (Durability::Sync, one writer: one fdatasync each), on a side database.
pub(crate) fn durable_puts(dir: &Path) -> Result<Measured, Failure> {
    let side = dir.join("durable-puts.strata");
    let db = Db::open(&side, Options::new().durability(Durability::Sync).auto_compact(false))?;
    let puts = 200;
    let content = vec![b'x'; 256];
    let start = Instant::now();
    for i in 0..puts {
        db.put(format!("note/{i:04}").as_bytes(), &content, None)?;
    }
    let elapsed = start.elapsed();
    db.close()?;
    std::fs::remove_dir_all(&side).at("remove", &side)?;
    Ok(Measured { operation: "durable puts (Sync, 1 writer)".into(), count: puts, elapsed, bytes: puts * 256, limit: Limit::Fsync })
}

fn summary(db: &Db, machine: &Machine, measured: &[Measured], reopen: Duration) {
    let stats = db.stats();
    println!("summary — records per tier:");
    print!("{}", tier_table(&stats).render());
    println!(
        "disk {} for {} logical bytes: space amplification {:.2}; reopen {:.1} ms\n",
        show_size(stats.disk_bytes),
        show_size(stats.live_bytes),
        stats.space_amplification,
        reopen.as_secs_f64() * 1e3
    );
    println!("{}", operations_table(machine, measured).render());
}

pub(crate) fn operations_table_rows(machine: &Machine, m: &Measured) -> Vec<String> {
    let seconds = m.elapsed.as_secs_f64().max(1e-9);
    let per_second = m.count as f64 / seconds;
    let mb_s = m.bytes as f64 / seconds / 1e6;
    let (limit, ratio) = match m.limit {
        Limit::Disk => (format!("disk {:.0} MB/s", machine.disk_write_mb_s), mb_s / machine.disk_write_mb_s),
        Limit::Memory => (format!("memory {:.1} GB/s/thread", machine.memory_read_gb_s), mb_s / 1e3 / machine.memory_read_gb_s),
        Limit::Fsync => (format!("{:.0} fdatasyncs/s", machine.fsyncs_per_s), per_second / machine.fsyncs_per_s),
    };
    vec![
        m.operation.clone(),
        m.count.to_string(),
        format!("{:.1} ms", seconds * 1e3),
        format!("{per_second:.0}/s"),
        format!("{mb_s:.0} MB/s"),
        limit,
        format!("{ratio:.2}"),
    ]
}

pub(crate) fn operations_table(machine: &Machine, measured: &[Measured]) -> Table {
    let mut table =
        Table::new(&["operation", "count", "time", "rate", "throughput", "this machine", "ratio"]).right_aligned(&[1, 2, 3, 4, 6]);
    for m in measured {
        table.row(operations_table_rows(machine, m));
    }
    table
}
